"""The estimator's arithmetic, checked by hand against the published coefficients."""

from __future__ import annotations

import pytest

from joulescore.hardware import parse_cpuinfo
from joulescore.meters.base import Domain
from joulescore.meters.estimator import (
    CpuPowerModel,
    EstimatorMeter,
    RamPowerModel,
    VcpuWatts,
    cpu_power_model,
    ram_power_model,
)
from tests.burn import burn_cpu_s

MODEL = CpuPowerModel(
    central=VcpuWatts(0.5, 3.0, "test central", "src"),
    low=VcpuWatts(0.25, 2.0, "low", ""),
    high=VcpuWatts(1.0, 5.0, "high", ""),
)
RAM = RamPowerModel(0.3, 0.2, 0.4, ("ram-src",))


class FakeClockCpu:
    """CPU seconds as a test sets them (the process's real CPU time is not controllable)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def __call__(self) -> float:
        return self.cpu_s


def test_window_energy_matches_hand_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 100.0, 110.0])  # meter start, begin reading, end reading
    monkeypatch.setattr("joulescore.meters.estimator.now_s", lambda: next(clock))
    cpu = FakeClockCpu()
    meter = EstimatorMeter(MODEL, RAM, vcpus=2, ram_gb=10.0, cpu_seconds=cpu)
    begin = meter.read()
    cpu.cpu_s = 15.0  # 1.5 of 2 vCPUs busy for 10 s
    end = meter.read()
    m = meter.measurement(begin, end)
    # cpu: 2 vCPUs * 0.5 W * 10 s idle + (3.0 - 0.5) W * 15 CPU-s = 10 + 37.5
    assert m.energy_j[Domain.CPU] == pytest.approx(47.5)
    # dram: 10 GB * 0.3 W/GB * 10 s
    assert m.energy_j[Domain.DRAM] == pytest.approx(30.0)
    assert m.low_j[Domain.CPU] == pytest.approx(2 * 0.25 * 10 + 1.75 * 15)
    assert m.high_j[Domain.DRAM] == pytest.approx(40.0)
    assert m.duration_s == pytest.approx(10.0)
    assert m.total_low_j < m.total_j < m.total_high_j
    assert m.provenance.kind == "estimated"
    assert not m.measured


def test_cpu_time_is_capped_by_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 1.0])
    monkeypatch.setattr("joulescore.meters.estimator.now_s", lambda: next(clock))
    cpu = FakeClockCpu()
    meter = EstimatorMeter(MODEL, RAM, vcpus=2, ram_gb=0.0, cpu_seconds=cpu)
    begin = meter.read()
    cpu.cpu_s = 50.0  # impossible: 2 vCPUs give at most 2 CPU-s per second
    end = meter.read()
    assert meter.measurement(begin, end).energy_j[Domain.CPU] == pytest.approx(2 * 0.5 + 2.5 * 2)


def test_emerald_rapids_uses_the_teads_curve_on_its_tdp() -> None:
    model = cpu_power_model("Emerald Rapids", "GenuineIntel")
    # Xeon Platinum 8592+: 350 W TDP, 128 threads; Teads ratios 0.12 and 1.02.
    assert model.central.idle_w == pytest.approx(350 * 0.12 / 128)
    assert model.central.max_w == pytest.approx(350 * 1.02 / 128)
    assert model.low.idle_w <= model.central.idle_w <= model.high.idle_w
    assert model.low.max_w <= model.central.max_w <= model.high.max_w
    assert "8592+" in model.central.label


def test_ccf_microarchitecture_is_preferred_when_published() -> None:
    model = cpu_power_model("Cascade Lake", "GenuineIntel")
    assert (model.central.idle_w, model.central.max_w) == (0.64, 3.97)


def test_unknown_cpu_falls_back_to_the_ccf_average() -> None:
    model = cpu_power_model(None, "")
    assert (model.central.idle_w, model.central.max_w) == (0.74, 3.5)
    assert "unknown" in model.central.label


def test_ram_band_spans_ccf_and_boavizta() -> None:
    ram = ram_power_model()
    assert ram.low_w_per_gb == pytest.approx(0.284)
    assert ram.high_w_per_gb == pytest.approx(0.392)
    assert ram.w_per_gb == pytest.approx((0.284 + 0.392) / 2)


def test_uncertainty_is_half_band_at_full_load() -> None:
    meter = EstimatorMeter(MODEL, RAM, vcpus=1, ram_gb=0.0, cpu_seconds=FakeClockCpu())
    # full load, 1 vCPU, 1 s: central 3.0 J, low 2.0, high 5.0 -> max deviation 2.0 = 66.7 %
    assert meter.uncertainty_pct() == pytest.approx(200 / 3)


def test_cpuinfo_parsing_names_the_microarchitecture() -> None:
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n" \
           "model name\t: Intel(R) Xeon(R) Platinum 8259CL\nstepping\t: 7\n\nprocessor\t: 1\n"
    info = parse_cpuinfo(text)
    assert info.microarchitecture == "Cascade Lake"
    assert info.model_name == "Intel(R) Xeon(R) Platinum 8259CL"
    amd = parse_cpuinfo("vendor_id : AuthenticAMD\ncpu family : 25\nmodel : 1\nmodel name : AMD EPYC 7763\n")
    assert amd.microarchitecture == "AMD EPYC 3rd Gen (Milan)"


def test_real_process_cpu_time_drives_the_estimate() -> None:
    meter = EstimatorMeter()
    begin = meter.read()
    burned = burn_cpu_s(0.1)
    end = meter.read()
    m = meter.measurement(begin, end)
    # the idle power charged to the run: all of it, or its share while other processes were busy
    idle_only = meter.vcpus * meter.cpu_model.central.idle_w * m.duration_s * meter.share
    assert m.energy_j[Domain.CPU] > idle_only
    assert burned >= 0.1
