"""NVML meter against a binding double: counter, polling fallback, estimate, refusals, CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import pytest

from joulescore.errors import BadInput
from joulescore.meters import nvml, select_meter
from joulescore.meters.base import Domain
from tests.fake_nvml import NO_PERMISSION, NOT_SUPPORTED, FakeGpu, FakeNvml

NO_COUNTER = {"energy": NOT_SUPPORTED}
NO_POWER = {"energy": NOT_SUPPORTED, "power": NOT_SUPPORTED}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(nvml, "now_s", c)
    return c


def test_counter_per_gpu_and_summed() -> None:
    a, b = FakeGpu(energy_mj=1_000_000), FakeGpu(uuid="GPU-bbbb-1111", energy_mj=5_000)
    meter = nvml.NvmlMeter(FakeNvml(a, b), env={}, sync=None)
    begin = meter.read()
    a.energy_mj += 120_500  # 120.5 J
    b.energy_mj += 30_000
    m = meter.measurement(begin, meter.read())
    assert m.energy_j == {Domain.GPU: pytest.approx(150.5)}
    assert m.detail_j == {"gpu:gpu0": pytest.approx(120.5), "gpu:gpu1": pytest.approx(30.0)}
    prov = meter.provenance()
    assert prov.kind == "measured" and prov.sources == ("NVML counter",)
    assert meter._poller is None  # nothing to poll when every GPU has a counter


def test_polling_fallback_integrates_trapezoid(clock: Clock) -> None:
    gpu = FakeGpu(power_mw=200_000, errors=dict(NO_COUNTER))
    meter = nvml.NvmlMeter(FakeNvml(gpu), env={}, sync=None)
    begin = meter.read()  # t = 0, 200 W
    gpu.power_mw, clock.t = 300_000, 10.0
    m = meter.measurement(begin, meter.read())
    assert m.energy_j[Domain.GPU] == pytest.approx((200 + 300) / 2 * 10)
    assert m.provenance.kind == "measured"
    assert m.provenance.sources == ("NVML polling",)
    assert "energy counter: not supported" in m.provenance.includes[0]


def test_estimate_from_tdp_and_utilisation(clock: Clock) -> None:
    gpu = FakeGpu(name="NVIDIA A100-SXM4-80GB", util_pct=50, errors=dict(NO_POWER))
    meter = nvml.NvmlMeter(FakeNvml(gpu), env={}, sync=None)
    begin = meter.read()
    clock.t = 10.0
    m = meter.measurement(begin, meter.read())
    tdp = 400.0  # A100 SXM4 row of the accelerators table
    assert m.energy_j[Domain.GPU] == pytest.approx(tdp * 0.5 * 10)
    assert m.low_j[Domain.GPU] == pytest.approx(tdp * 0.5 * 10 * nvml.EST_LOW_FACTOR)
    assert m.high_j[Domain.GPU] == pytest.approx(tdp * (0.5 + nvml.EST_HIGH_EXTRA_TDP) * 10)
    assert m.provenance.kind == "estimated" and m.provenance.domains["gpu"]["kind"] == "estimated"
    assert nvml.NvmlMeter(FakeNvml(gpu), env={}, sync=None, allow_estimate=True).gpus
    with pytest.raises(nvml.NvmlUnavailable):
        nvml.NvmlMeter(FakeNvml(gpu), env={}, sync=None, allow_estimate=False)


def test_tdp_match_prefers_form_factor() -> None:
    assert nvml.tdp_w_for("NVIDIA H100 PCIe")[0] == 350.0
    assert nvml.tdp_w_for("NVIDIA A10G")[0] == 300.0
    assert nvml.tdp_w_for("NVIDIA L4")[0] == 72.0
    assert nvml.tdp_w_for("Some Unknown GPU") == (None, "")


@pytest.mark.parametrize("gpu, reason", [
    (FakeGpu(errors={"energy": NO_PERMISSION, "power": NO_PERMISSION, "util": NO_PERMISSION}), "no permission"),
    (FakeGpu(errors={"energy": NOT_SUPPORTED, "power": NOT_SUPPORTED, "util": NOT_SUPPORTED}), "not supported"),
    (FakeGpu(mig=1), "MIG mode enabled"),
    (FakeGpu(virt=2), "vGPU guest"),
    (FakeGpu(name="Mystery GPU", errors=dict(NO_POWER)), "no TDP"),
])
def test_refusal_is_a_named_reason_never_zero(gpu: FakeGpu, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(gpu)
    with pytest.raises(nvml.NvmlUnavailable, match=reason):
        nvml.NvmlMeter(fake, env={}, sync=None)
    rows = nvml.statuses(fake, env={})
    assert rows[0].name == "nvml" and not rows[0].available
    assert not rows[1].available and reason in rows[1].reason
    monkeypatch.setattr(nvml, "import_nvml", lambda: fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # the suite hides real GPUs with it (conftest.py)
    with pytest.raises(BadInput, match=f"meter nvml is not available here: .*{reason}") as err:
        select_meter("nvml")
    assert "\n" not in str(err.value)


def test_refused_gpu_beside_measured_one_is_noted_not_counted() -> None:
    ok, mig = FakeGpu(energy_mj=0), FakeGpu(uuid="GPU-bbbb", mig=1, energy_mj=0)
    meter = nvml.NvmlMeter(FakeNvml(ok, mig), env={}, sync=None)
    begin = meter.read()
    ok.energy_mj, mig.energy_mj = 1000, 99_000
    m = meter.measurement(begin, meter.read())
    assert m.energy_j[Domain.GPU] == pytest.approx(1.0)
    assert "gpu:gpu1" not in m.detail_j
    assert any("gpu1" in n and "MIG" in n for n in m.provenance.notes)


def _four() -> FakeNvml:
    return FakeNvml(*(FakeGpu(uuid=f"GPU-{c * 4}-{i}", energy_mj=0) for i, c in enumerate("abcd")))


@pytest.mark.parametrize("value, expected, problem", [
    ("2", [2], ""),
    ("3,1", [3, 1], ""),
    ("GPU-cccc", [2], ""),
    ("dddd-3", [3], ""),  # UUID without the GPU- prefix, as CUDA accepts
    ("0,7,1", [0], "names no GPU"),
    ("MIG-abc,1", [1], "MIG instance"),
    ("GPU-", [], "matches 4 GPUs"),
])
def test_cuda_visible_devices(value: str, expected: list[int], problem: str) -> None:
    indices, problems = nvml.visible_gpus(_four(), {"CUDA_VISIBLE_DEVICES": value})
    assert indices == expected
    assert (problem in " ".join(problems)) if problem else not problems


def test_cuda_visible_devices_selects_what_is_measured() -> None:
    fake = _four()
    meter = nvml.NvmlMeter(fake, env={"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, sync=None)
    begin = meter.read()
    for g in fake.gpus:
        g.energy_mj += 2000
    m = meter.measurement(begin, meter.read())
    assert m.detail_j == {"gpu:gpu1": pytest.approx(2.0)}
    with pytest.raises(nvml.NvmlUnavailable, match="none visible"):
        nvml.NvmlMeter(fake, env={"CUDA_VISIBLE_DEVICES": ""}, sync=None)


def test_sync_hook_runs_before_each_read() -> None:
    calls = []
    meter = nvml.NvmlMeter(FakeNvml(FakeGpu()), env={}, sync=lambda: calls.append(1))
    meter.read()
    meter.read()
    assert len(calls) == 2


def test_torch_sync_only_when_cuda_initialised(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from types import SimpleNamespace

    synced = []
    cuda = SimpleNamespace(is_initialized=lambda: False, synchronize=lambda: synced.append(1))
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    nvml.torch_sync()
    assert synced == []
    cuda.is_initialized = lambda: True
    nvml.torch_sync()
    assert synced == [1]


def test_background_polling_thread_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(FakeGpu(errors=dict(NO_COUNTER)))
    meter = nvml.NvmlMeter(fake, env={}, sync=None, poll_interval_s=0.005)
    meter.start()
    import time
    time.sleep(0.1)
    meter.stop()
    assert fake.calls["power"] > 5


def test_auto_prefers_nvml_for_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    fake = FakeNvml(FakeGpu(), FakeGpu(uuid="GPU-x", errors=dict(NO_POWER), util_pct=10))
    monkeypatch.setattr(nvml, "import_nvml", lambda: fake)
    monkeypatch.setattr("joulescore.meters.amdsmi_meter.import_amdsmi", lambda: (_ for _ in ()).throw(ImportError("x")))
    monkeypatch.setenv("JOULESCORE_POWERCAP_ROOT", str(tmp_path / "none"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = select_meter("auto")
    prov = meter.provenance()
    assert set(meter.read().energy_j) == {Domain.CPU, Domain.DRAM, Domain.GPU}
    # gpu1 is estimated from TDP x utilisation, so the GPU domain is estimated too
    assert prov.domains["gpu"]["kind"] == "estimated"
    assert prov.kind == "estimated"
