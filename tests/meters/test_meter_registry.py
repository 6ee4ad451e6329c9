"""The meter registry: one table drives --meter, `joulescore meters` and the auto composite."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulescore.errors import BadInput, JoulescoreError, MeterUnavailable
from joulescore.meters import METER_NAMES, METERS, meter_statuses, select_meter
from joulescore.meters.amdsmi_meter import AmdSmiUnavailable
from joulescore.meters.base import Domain
from joulescore.meters.nvml import NvmlUnavailable
from joulescore.meters.rapl import RaplUnavailable
from joulescore.meters.registry import MeterEntry, auto_parts
from tests.powercap_tree import add_zone


def _no_module() -> None:
    raise ImportError("not installed (test)")


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("joulescore.meters.nvml.import_nvml", _no_module)
    monkeypatch.setattr("joulescore.meters.amdsmi_meter.import_amdsmi", _no_module)


def test_registry_lists_the_sources_with_priority_and_coverage() -> None:
    assert list(METERS) == ["nvml", "amdsmi", "rapl", "estimator", "prometheus", "exporter"]
    assert METER_NAMES == ("auto", "nvml", "amdsmi", "rapl", "estimator", "prometheus", "exporter")
    gpu, cpu_dram = frozenset({Domain.GPU}), frozenset({Domain.CPU, Domain.DRAM})
    # the scraped sources need a URL: they cover nothing for auto
    assert {n: e.covers for n, e in METERS.items()} == {"nvml": gpu, "amdsmi": gpu, "rapl": cpu_dram,
                                                        "estimator": cpu_dram, "prometheus": frozenset(),
                                                        "exporter": frozenset()}
    priorities = [e.priority for e in METERS.values()]
    assert priorities == sorted(priorities) and len(set(priorities)) == 6
    assert METERS["nvml"].priority < METERS["amdsmi"].priority
    assert METERS["rapl"].priority < METERS["estimator"].priority


def test_unknown_meter_is_one_line_naming_every_choice() -> None:
    with pytest.raises(BadInput) as err:
        select_meter("bogus")
    msg = str(err.value)
    assert "\n" not in msg and "'bogus'" in msg
    assert msg.endswith("choose one of: " + ", ".join(METER_NAMES))


def test_meter_unavailable_is_the_base_of_every_source_error() -> None:
    for cls in (NvmlUnavailable, RaplUnavailable, AmdSmiUnavailable):
        assert issubclass(cls, MeterUnavailable)
    assert issubclass(MeterUnavailable, JoulescoreError) and MeterUnavailable.exit_code == 2


def test_statuses_come_from_the_registry_in_priority_order(no_gpu: None, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(tmp_path / "absent"))
    names = [s.name for s in meter_statuses()]
    assert names == ["nvml", "amdsmi", "rapl", "estimator", "prometheus", "exporter"]


def test_auto_notes_what_fell_back_and_what_stayed_uncovered(no_gpu: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(tmp_path / "absent"))
    parts, notes = auto_parts()
    assert [(m.name, d) for m, d in parts] == [("estimator", frozenset({Domain.CPU, Domain.DRAM}))]
    assert len(notes) == 2
    assert notes[0].startswith("gpu not covered (nvml: pynvml not importable") and "; amdsmi: amdsmi not" in notes[0]
    assert notes[1].startswith("RAPL unavailable, CPU/DRAM estimated instead: no powercap interface")


def test_auto_gives_the_estimator_only_what_rapl_lacks(no_gpu: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    add_zone(tmp_path, "intel-rapl:0", "package-0", 0)  # no dram zone
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(tmp_path))
    parts, notes = auto_parts()
    assert [(m.name, d) for m, d in parts] == [("rapl", frozenset({Domain.CPU})),
                                              ("estimator", frozenset({Domain.DRAM}))]
    assert [n for n in notes if "RAPL" in n] == []


class _Broken:
    def __init__(self) -> None:
        raise RuntimeError("a bug, not a missing source")


def test_factory_catches_meter_unavailable_only() -> None:
    entry = MeterEntry("broken", f"{__name__}:_Broken", f"{__name__}:_Broken", frozenset({Domain.GPU}), 1)
    with pytest.raises(RuntimeError, match="a bug"):
        entry.try_create()
