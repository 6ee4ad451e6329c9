"""The CPU floor: a peak derived from cores x clock x FLOP/cycle (and said to be derived), and a floor
for the one phase whose figure is known when the other is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from joulescore.impact.floor import floor_report
from joulescore.impact.hardware_specs import ChipSpec, _cpu_row_spec, derived_cpu_peak
from joulescore.reference import as_float, load_table
from tests.conftest import cli
from tests.impact.test_impact import _spec, make_run

N = 134_515_008  # make_run's parameter count; 4 queries x 40 input / 10 output tokens, 98e6 bytes of weights

ROW = {"name": "Test CPU 1", "microarchitecture": "Testarch", "cores": "24", "tdp_w": "200",
       "mem_bw_per_socket_gbs": "", "peak_clock_ghz": "3.0", "peak_clock_basis": "all-core boost",
       "fp32_flop_per_cycle_per_core": "32", "peak_derivation_source": "https://example.org/spec", "source": "t"}


def test_derived_peak_is_cores_times_clock_times_flop_per_cycle() -> None:
    peak, text = derived_cpu_peak(ROW) or (0.0, "")
    assert peak == pytest.approx(24 * 3.0e9 * 32)
    assert "derived from cores x clock x FLOP/cycle, not a published figure" in text
    assert "all-core boost" in text and "FP32" in text
    chip = _cpu_row_spec(ROW)
    assert chip.peak_flops == pytest.approx(24 * 3.0e9 * 32) and chip.peak_basis == "FP32 FMA, derived"
    assert "https://example.org/spec" in chip.source
    # no derivation without every part and a source for them
    for key in ("cores", "peak_clock_ghz", "fp32_flop_per_cycle_per_core", "peak_derivation_source"):
        assert derived_cpu_peak({**ROW, key: ""}) is None, key


def test_the_floor_says_a_derived_peak_is_derived(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    chip = _cpu_row_spec({**ROW, "mem_bw_per_socket_gbs": "100"})
    f = floor_report(record, chip)
    assert f["available"] and not f["partial"] and f["chip"]["peak_derived"]
    assert f["phases"]["prefill"]["compute_j"] == pytest.approx(2 * N * 160 / (24 * 3.0e9 * 32 / 200))
    assert any("not a published figure" in n for n in f["notes"])
    published = floor_report(record, ChipSpec("gpu", 200.0, 24 * 3.0e9 * 32, "dense BF16", 100e9, "t"))
    assert not published["chip"]["peak_derived"]
    assert not any("not a published figure" in n for n in published["notes"])


def test_only_the_bandwidth_known_gives_the_decode_floor_and_says_prefill_is_missing(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    f = floor_report(record, ChipSpec("bw only", tdp_w=100.0, peak_flops=None, peak_basis="", mem_bw_bps=1e12,
                                      source="t", kind="cpu"))
    assert f["available"] and f["partial"]
    pre, dec = f["phases"]["prefill"], f["phases"]["decode"]
    assert pre["status"] == "missing" and pre["floor_j"] is None and pre["missing"] == "peak FLOP/s"
    assert dec["floor_j"] == pytest.approx(36 * 98e6 / 1e10) and dec["bound"] == "memory"
    assert dec["compute_j"] is None and dec["efficiency"] == pytest.approx(dec["floor_j"] / dec["measured_j"])
    assert any("prefill floor is missing" in n for n in f["notes"])
    # a partial floor gives no whole-run efficiency or floor per token
    assert f["efficiency"] is None and f["floor_j_per_output_token"] is None


def test_only_the_peak_known_gives_the_prefill_floor(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    f = floor_report(record, ChipSpec("peak only", 100.0, 1e14, "t", None, "t", kind="cpu"))
    assert f["available"] and f["partial"]
    assert f["phases"]["prefill"]["floor_j"] == pytest.approx(2 * N * 160 / 1e12)
    assert f["phases"]["decode"]["status"] == "missing" and f["phases"]["decode"]["missing"] == "memory bandwidth"
    assert any("decode floor is missing" in n for n in f["notes"])


def test_a_vm_that_names_no_model_is_matched_by_microarchitecture_and_says_so(tmp_path: Path) -> None:
    rows = load_table("cpus")
    arch = next(r["microarchitecture"] for r in rows if derived_cpu_peak(r) and as_float(r["mem_bw_per_socket_gbs"]))
    first = next(r["name"] for r in rows if r["microarchitecture"] == arch)
    spec = _spec()
    spec["hardware"]["cpu"], spec["hardware"]["cpu_microarchitecture"] = "AMD EPYC", arch
    f = floor_report(make_run(tmp_path / "a.db", spec=spec))
    assert f["table_row"] == first and f["matched_by"].startswith(f"microarchitecture {arch}")
    assert any(f"matched by microarchitecture {arch}" in n and first in n for n in f["notes"])
    assert f["chip"]["peak_derived"] and not f["partial"]


def test_every_cpu_row_with_peak_figures_cites_their_source() -> None:
    parts = ("peak_clock_ghz", "fp32_flop_per_cycle_per_core", "peak_clock_basis")
    cited = re.compile(r"https?://|[\w.-]+/[\w.-]+:\S+@[0-9a-f]{40}")
    with_peak = 0
    for row in load_table("cpus"):
        if not any((row.get(p) or "").strip() for p in parts):
            continue
        with_peak += 1
        assert all((row.get(p) or "").strip() for p in parts), row["name"]
        assert cited.search(row["peak_derivation_source"]), row["name"]
        peak, _ = derived_cpu_peak(row) or (0.0, "")
        assert peak == pytest.approx(float(row["cores"]) * float(row["peak_clock_ghz"]) * 1e9
                                     * float(row["fp32_flop_per_cycle_per_core"]))
    assert with_peak >= 1


def test_cli_prints_the_missing_phase(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    spec = _spec()
    spec["hardware"]["cpu"], spec["hardware"]["cpu_microarchitecture"] = "Mystery RISC-V 9000", None
    make_run(db, spec=spec)
    text = cli("impact", "run-a", "--tdp-w", "100", "--mem-bw-gbs", "100", db=db, env={"COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    assert "no peak FLOP/s" in text.stdout and "missing" in text.stdout and "prefill floor is missing" in text.stdout
    d = json.loads(cli("impact", "run-a", "--tdp-w", "100", "--mem-bw-gbs", "100", "--json", db=db).stdout)
    assert d["floor"]["partial"] and d["floor"]["phases"]["decode"]["floor_j"] > 0


def test_project_names_the_floor_of_the_measured_chip(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_run(db)
    row = next(r for r in load_table("cpus") if derived_cpu_peak(r))
    p = cli("project", "run-a", "--to", row["name"], db=db, env={"COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    assert "physical floor on the measured chip" in p.stdout
    assert "compute term uses a peak FLOP/s derived" in p.stdout
