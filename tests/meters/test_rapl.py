"""RAPL through powercap, on fake sysfs trees written to tmp_path (no sensors needed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from joulescore.errors import BadInput
from joulescore.meters import rapl, select_meter
from joulescore.meters.base import Domain
from tests.powercap_tree import REAL_MAX_UJ, add_zone, server_tree, set_uj


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(tmp_path))
    monkeypatch.setattr("joulescore.meters.nvml.import_nvml", _no_module)
    monkeypatch.setattr("joulescore.meters.amdsmi_meter.import_amdsmi", _no_module)
    return tmp_path


def _no_module() -> None:
    raise ImportError("not installed (test)")


def test_packages_summed_once_dram_separate_core_and_psys_never_added(root: Path) -> None:
    server_tree(root)
    meter = rapl.RaplMeter()
    begin = meter.read()
    set_uj(root, "intel-rapl:0", 1_000_000 + 5_000_000)     # +5 J package-0
    set_uj(root, "intel-rapl:1", 2_000_000 + 7_000_000)     # +7 J package-1
    set_uj(root, "intel-rapl:0:0", 500_000 + 4_000_000)     # core: inside package-0
    set_uj(root, "intel-rapl:1:0", 700_000 + 6_000_000)
    set_uj(root, "intel-rapl:0:2", 300_000 + 1_000_000)     # +1 J dram
    set_uj(root, "intel-rapl:1:1", 400_000 + 2_000_000)     # +2 J dram
    set_uj(root, "intel-rapl:2", 9_000_000 + 50_000_000)    # psys: overlaps everything
    m = meter.measurement(begin, meter.read())
    assert m.energy_j[Domain.CPU] == pytest.approx(12.0)
    assert m.energy_j[Domain.DRAM] == pytest.approx(3.0)
    assert Domain.SYSTEM not in m.energy_j
    assert m.detail_j["cpu:package-1:intel-rapl:1"] == pytest.approx(7.0)
    prov = meter.provenance()
    assert prov.kind == "measured"
    assert any("psys" in n and "not added" in n for n in prov.notes)
    assert any("core/uncore" in n for n in prov.notes)
    assert m.low_j == m.energy_j == m.high_j


def test_wrap_during_window_is_corrected(root: Path) -> None:
    add_zone(root, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    meter = rapl.RaplMeter()
    begin = meter.read()
    set_uj(root, "intel-rapl:0", 100_000)  # wrapped: 0.1 J to the top, 0.1 J after
    m = meter.measurement(begin, meter.read())
    assert m.energy_j[Domain.CPU] == pytest.approx(0.2)
    assert meter.wraps == 1


def test_long_window_with_many_wraps_counts_every_one(root: Path) -> None:
    """Counter advanced by 40 J through a 5 J range (8 wraps); only the poller sees them all."""
    max_uj = 5_000_000
    add_zone(root, "intel-rapl:0", "package-0", 0, max_uj=max_uj)
    meter = rapl.RaplMeter()
    assert meter.interval_s == pytest.approx(5.0 / 500.0 / 4)  # 2.5 ms for this tiny range
    meter.start()
    begin = meter.read()

    def burn() -> None:
        raw = 0
        for _ in range(40):
            raw = (raw + 1_000_000) % max_uj
            set_uj(root, "intel-rapl:0", raw)
            time.sleep(0.01)  # 4 poll periods per joule; a wrap needs 5 J

    writer = threading.Thread(target=burn)
    writer.start()
    writer.join()
    end = meter.read()
    meter.stop()
    assert meter.measurement(begin, end).energy_j[Domain.CPU] == pytest.approx(40.0)
    assert meter.wraps == 8


def test_poll_interval_is_capped_for_real_ranges() -> None:
    zone = rapl.Zone(Path("x"), "intel-rapl:0", "package-0", REAL_MAX_UJ)
    assert rapl.poll_interval_s([zone]) == rapl.MAX_POLL_INTERVAL_S
    small = rapl.Zone(Path("x"), "intel-rapl:0", "package-0", 2_000_000)  # 2 J: wraps in 4 ms at 500 W
    assert rapl.poll_interval_s([small]) == pytest.approx(0.001)
    amd = rapl.Zone(Path("x"), "amd-rapl:0", "package-0", 2**32)  # a 32-bit uJ counter: 4.3 kJ
    assert rapl.poll_interval_s([amd]) == pytest.approx(2**32 / 1e6 / 500 / 4)  # ~2.1 s, under the cap
    assert rapl.poll_interval_s([zone, amd]) == pytest.approx(2**32 / 1e6 / 500 / 4)  # the shortest wrap rules


def test_amd_rapl_tree(root: Path) -> None:
    add_zone(root, "amd-rapl:0", "package-0", 0)
    meter = rapl.RaplMeter()
    begin = meter.read()
    set_uj(root, "amd-rapl:0", 3_000_000)
    assert meter.measurement(begin, meter.read()).energy_j == {Domain.CPU: pytest.approx(3.0)}


def test_unreadable_energy_says_how_to_fix_and_auto_falls_back(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root, where chmod 000 does not stop a read, so the kernel's EACCES
    is raised at the file-read boundary (Path.read_text of that one file)."""
    server_tree(root)
    locked = root / "intel-rapl:0" / "energy_uj"
    real_read = Path.read_text

    def read_text(self: Path, *a: object, **k: object) -> str:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(rapl.RaplUnavailable, match=r"chmod o\+r .*energy_uj.*udev.*root"):
        rapl.RaplMeter()
    with pytest.raises(BadInput, match="meter rapl is not available here: cannot read"):
        select_meter("rapl")
    auto = select_meter("auto")
    prov = auto.provenance()
    assert prov.kind == "estimated"
    assert prov.domains["cpu"]["kind"] == "estimated"
    assert any(n.startswith("RAPL unavailable, CPU/DRAM estimated instead") and "chmod" in n for n in prov.notes)
    status = rapl.status()
    assert not status.available and "permission denied" in status.reason


def test_energy_file_that_cannot_be_read_is_a_reason(root: Path) -> None:
    zone = add_zone(root, "intel-rapl:0", "package-0")
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # reading a directory fails like a broken sysfs node
    with pytest.raises(rapl.RaplUnavailable, match="cannot read .*energy_uj"):
        rapl.RaplMeter()


def test_no_powercap_and_no_package(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(root / "absent"))
    assert "no powercap interface" in rapl.status().reason
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(root))
    add_zone(root, "intel-rapl:0", "psys")
    with pytest.raises(rapl.RaplUnavailable, match="no package zone"):
        rapl.RaplMeter()


def test_auto_uses_rapl_for_cpu_and_estimator_for_missing_dram(root: Path) -> None:
    add_zone(root, "intel-rapl:0", "package-0")
    meter = select_meter("auto")
    prov = meter.provenance()
    assert prov.kind == "mixed"
    assert prov.domains["cpu"]["kind"] == "measured"
    assert prov.domains["dram"]["kind"] == "estimated"
    assert set(meter.read().energy_j) == {Domain.CPU, Domain.DRAM}
    server_tree(root / "full")
    import os
    os.environ["JOULESCORE_POWERCAP_ROOT"] = str(root / "full")
    assert select_meter("auto").provenance().kind == "measured"
