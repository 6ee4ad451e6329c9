"""The Python API, `joulescore measure -- CMD`, `joulescore meters`, and the idle baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import joulescore
from joulescore.errors import BadInput
from joulescore.meters.base import Domain
from joulescore.meters.monitor import Monitor, idle_power_w
from joulescore.meters.rapl import RaplMeter
from joulescore.model.sections import Meter
from joulescore.store.record import _net
from tests.burn import burn_cpu_s
from tests.powercap_tree import add_zone, server_tree, set_uj

REPO = Path(__file__).resolve().parents[2]


def test_import_is_light() -> None:
    code = "import sys, joulescore; print(int('joulescore.meters' in sys.modules), int('psutil' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONPATH": str(REPO)}).stdout.split()
    assert out == ["0", "0"]


def test_nested_windows_on_rapl_counters(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    mon = Monitor(RaplMeter(tmp_path))
    mon.begin_window("outer")
    set_uj(tmp_path, "intel-rapl:0", 2_000_000)
    mon.begin_window("inner")
    set_uj(tmp_path, "intel-rapl:0", 5_000_000)
    inner = mon.end_window("inner")
    set_uj(tmp_path, "intel-rapl:0", 6_000_000)
    outer = mon.end_window("outer")
    mon.close()
    assert inner.energy_j[Domain.CPU] == pytest.approx(3.0)
    assert outer.energy_j[Domain.CPU] == pytest.approx(6.0)
    assert inner.name == "inner" and inner.measured
    with pytest.raises(BadInput, match="no open window"):
        mon.end_window("inner")


def test_measure_context_and_timeline(tmp_path: Path) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    with joulescore.measure(RaplMeter(tmp_path), timeline_interval_s=0.01) as m:
        for step in range(1, 6):
            set_uj(tmp_path, "intel-rapl:0", step * 1_000_000)
            time.sleep(0.02)
    assert m.result is not None
    assert m.result.energy_j[Domain.CPU] == pytest.approx(5.0)
    assert m.result.provenance.kind == "measured"
    assert len(m.timeline) >= 3
    watts = [w[Domain.CPU] for _, w in m.timeline]
    assert min(watts) >= 0.0 and max(watts) > 0.0
    times = [t for t, _ in m.timeline]
    assert times == sorted(times)
    # the timeline's watts x intervals never add up to more than the counter moved
    assert sum(w * (t - p) for w, t, p in zip(watts[1:], times[1:], times)) <= 5.0 + 1e-9


def test_measure_with_estimator_says_estimated() -> None:
    with joulescore.measure("estimator") as m:
        burn_cpu_s(0.05)
    assert m.result is not None and m.result.provenance.kind == "estimated"
    assert m.result.energy_j[Domain.CPU] > 0 and m.result.low_j[Domain.CPU] < m.result.high_j[Domain.CPU]


def test_idle_power_and_net_energy(tmp_path: Path) -> None:
    server_tree(tmp_path)
    watts = idle_power_w(RaplMeter(tmp_path), 0.05)
    assert watts == {Domain.CPU: 0.0, Domain.DRAM: 0.0}  # the fake counters did not move
    meter = Meter(kind="measured", idle_power_w={"cpu": 10.0, "dram": 2.0}, idle_baseline_s=5)
    net = _net(meter, gross_j=100.0, duration_s=5.0)
    assert net["gross_total_j"] == 100.0 and net["idle_power_w"] == 12.0
    assert net["net_total_j"] == pytest.approx(40.0) and "gross" in net["net_note"]
    assert _net(Meter(kind="measured"), 100.0, 5.0) == {}  # subtracted only on request


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "joulescore.cli", *args], capture_output=True, text=True,
                          timeout=60, env=os.environ | {"PYTHONPATH": str(REPO)} | (env or {}))


def test_cli_measure_passes_exit_status_and_reports_json(tmp_path: Path) -> None:
    res = _cli("measure", "--json", "--meter", "estimator", "--",
               sys.executable, "-c", "import sys; sum(range(3_000_000)); print('child out'); sys.exit(7)")
    assert res.returncode == 7, res.stderr
    assert res.stdout == "child out\n"  # the command's stdout is untouched
    report = json.loads(res.stderr)
    assert report["exit_status"] == 7 and report["kind"] == "estimated"
    assert report["domain_kind"] == {"cpu": "estimated", "dram": "estimated"}
    assert report["energy_j"]["cpu"] > 0 and report["duration_s"] > 0 and report["avg_power_w"] > 0


def test_cli_measure_with_rapl_is_measured_and_missing_command_is_one_line(tmp_path: Path) -> None:
    server_tree(tmp_path)
    res = _cli("measure", "--meter", "rapl", "--", sys.executable, "-c", "pass",
               env={"JOULESCORE_POWERCAP_ROOT": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert "measured" in res.stderr and "total" in res.stderr
    res = _cli("measure", "--", "no-such-command-xyz")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: command not found: no-such-command-xyz"


def test_cli_meters_lists_every_source(tmp_path: Path) -> None:
    server_tree(tmp_path)
    res = _cli("meters", "--json", env={"JOULESCORE_POWERCAP_ROOT": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {"nvml", "amdsmi", "rapl", "estimator"} <= rows.keys()
    assert rows["rapl"]["available"] and rows["rapl"]["covers"] == ["cpu", "dram"]
    assert "package-1" in rows["rapl"]["reason"]
    assert not rows["amdsmi"]["available"] and rows["amdsmi"]["reason"]
    res = _cli("meters", env={"JOULESCORE_POWERCAP_ROOT": str(tmp_path / "absent"), "COLUMNS": "400"})
    assert "no powercap interface" in res.stdout
