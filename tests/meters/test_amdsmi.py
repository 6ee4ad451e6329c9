"""amdsmi meter against a binding double (the real one needs ROCm's library)."""

from __future__ import annotations

import pytest

from joulescore.meters import amdsmi_meter
from joulescore.meters.base import Domain


class FakeAmdSmi:
    def __init__(self, accumulators: list[int], resolution: float = 15.3, old_key: bool = False) -> None:
        self.acc = accumulators
        self.resolution = resolution
        self.key = "power" if old_key else "energy_accumulator"

    def amdsmi_init(self) -> None:
        pass

    def amdsmi_get_processor_handles(self) -> list[int]:
        return list(range(len(self.acc)))

    def amdsmi_get_energy_count(self, h: int) -> dict[str, float]:
        if self.acc[h] < 0:
            raise RuntimeError("AMDSMI_STATUS_NOT_SUPPORTED")
        return {self.key: self.acc[h], "counter_resolution": self.resolution, "timestamp": 0}


@pytest.mark.parametrize("old_key", [False, True])
def test_energy_is_accumulator_times_resolution(old_key: bool) -> None:
    fake = FakeAmdSmi([1000, 0], old_key=old_key)
    meter = amdsmi_meter.AmdSmiMeter(fake, env={})
    begin = meter.read()
    fake.acc = [1000 + 1_000_000, 2_000_000]
    m = meter.measurement(begin, meter.read())
    assert m.energy_j[Domain.GPU] == pytest.approx(3_000_000 * 15.3 / 1e6)
    assert m.detail_j["gpu:gpu1"] == pytest.approx(2_000_000 * 15.3 / 1e6)


def test_unavailable_reasons() -> None:
    with pytest.raises(amdsmi_meter.AmdSmiUnavailable, match="NOT_SUPPORTED"):
        amdsmi_meter.AmdSmiMeter(FakeAmdSmi([-1]), env={})
    assert amdsmi_meter.AmdSmiMeter(FakeAmdSmi([0, 0, 0]), env={"ROCR_VISIBLE_DEVICES": "2"}).gpus.keys() == {"gpu2"}

    def missing() -> None:
        raise OSError("libamd_smi.so: cannot open shared object file")

    import joulescore.meters.amdsmi_meter as mod
    original = mod.import_amdsmi
    mod.import_amdsmi = missing
    try:
        status = amdsmi_meter.status()
    finally:
        mod.import_amdsmi = original
    assert not status.available and "libamd_smi.so" in status.reason
