"""A ``pynvml`` stand-in for CLI subprocess tests: one H200 whose energy counter rises at a steady power.

Put this folder first on PYTHONPATH; ``FAKE_NVML_POWER_W`` sets the power (default 300 W);
``FAKE_NVML_OTHER_PIDS`` lists other compute processes on the GPU (default "1": one, 2 GB; empty: none).
Only the NVML binding is replaced: everything above it (probing, counters, the record) is real.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.fake_nvml import FakeGpu, FakeNvml

POWER_W = float(os.environ.get("FAKE_NVML_POWER_W", "300"))
OTHER_PIDS = [int(p) for p in os.environ.get("FAKE_NVML_OTHER_PIDS", "1").split(",") if p.strip()]
_T0 = time.monotonic()


class _RisingNvml(FakeNvml):
    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> object:
        return int((time.monotonic() - _T0) * POWER_W * 1000)  # mJ


_FAKE = _RisingNvml(FakeGpu(name="NVIDIA H200", uuid="GPU-h200-fake-0", memory_bytes=141 * 10**9,
                            power_limit_mw=700_000, processes=[(pid, 2 * 10**9) for pid in OTHER_PIDS]))


def __getattr__(name: str) -> Any:
    return getattr(_FAKE, name)
