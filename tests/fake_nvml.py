"""A small stand-in for the pynvml module, injected at the NVML import boundary.

It models only what NVML returns (numbers in NVML's units, NVMLError codes);
the tests drive its values and errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

NOT_SUPPORTED = 3
NO_PERMISSION = 4


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {NOT_SUPPORTED: "Not Supported", NO_PERMISSION: "Insufficient Permissions"}.get(self.value, f"code {self.value}")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-aaaa-0000"
    energy_mj: int = 0
    power_mw: int = 100_000
    util_pct: int = 0
    mig: int | None = None  # None: not MIG-capable (NOT_SUPPORTED)
    virt: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # NVML function -> error code
    memory_bytes: int = 80 * 10**9
    power_limit_mw: int = 700_000
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, used bytes) of compute processes
    throttle_reasons: int = 0  # nvmlClocksThrottleReason* bits, e.g. 0x40 hardware thermal slowdown


class FakeNvml:
    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NO_PERMISSION
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_GPU_VIRTUALIZATION_MODE_VGPU = 2

    def __init__(self, *gpus: FakeGpu) -> None:
        self.gpus = list(gpus)
        self.calls: dict[str, int] = {}

    def _call(self, gpu: FakeGpu, fn: str, value: object) -> object:
        self.calls[fn] = self.calls.get(fn, 0) + 1
        if fn in gpu.errors:
            raise NVMLError(gpu.errors[fn])
        return value

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return h.name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> tuple[int, int]:
        if h.mig is None:
            raise NVMLError(NOT_SUPPORTED)
        return (h.mig, h.mig)

    def nvmlDeviceGetVirtualizationMode(self, h: FakeGpu) -> int:
        return h.virt

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> object:
        return self._call(h, "energy", h.energy_mj)

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> object:
        return self._call(h, "power", h.power_mw)

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> object:
        return self._call(h, "util", SimpleNamespace(gpu=h.util_pct, memory=0))

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> object:
        return self._call(h, "memory", SimpleNamespace(total=h.memory_bytes, used=0, free=h.memory_bytes))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> object:
        return self._call(h, "power_limit", h.power_limit_mw)

    def nvmlSystemGetDriverVersion(self) -> str:
        return "560.35.03"

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> object:
        return self._call(h, "processes", [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in h.processes])

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeGpu) -> object:
        return self._call(h, "throttle", h.throttle_reasons)
