"""What a record says about the GPUs NVML meters: their facts, and who else was using them.

Each fact is read on its own, so a driver that does not support one query
(a vGPU, an old driver) leaves that fact empty instead of losing the GPU.
"""

from __future__ import annotations

import os
from typing import Any

import psutil


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _try(nvml: Any, fn: str, *args: Any) -> Any:
    try:
        return getattr(nvml, fn)(*args)
    except (nvml.NVMLError, AttributeError):
        return None


def device_facts(nvml: Any, index: int, name: str, uuid: str, handle: Any, method: str | None) -> dict[str, Any]:
    """Name, UUID, memory, power limit, driver and how its energy is read: the record's ``hardware.gpus`` entry."""
    memory = _try(nvml, "nvmlDeviceGetMemoryInfo", handle)
    limit_mw = _try(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    driver = _try(nvml, "nvmlSystemGetDriverVersion")
    return {
        "index": index,
        "name": name,
        "uuid": uuid,
        "memory_gb": round(memory.total / 1e9, 2) if memory is not None else None,
        "power_limit_w": round(limit_mw / 1000.0, 1) if limit_mw is not None else None,
        "driver_version": _text(driver) if driver is not None else None,
        "energy_method": method,
    }


def own_pids() -> set[int]:
    """This process and its descendants (a served engine is a child)."""
    me = psutil.Process(os.getpid())
    try:
        return {me.pid, *(c.pid for c in me.children(recursive=True))}
    except psutil.Error:
        return {me.pid}


def other_processes(nvml: Any, devices: list[tuple[str, Any]], mine: set[int]) -> list[dict[str, Any]]:
    """Compute processes on these GPUs that are not ours: their energy is in the GPU's counter too."""
    seen = []
    for label, handle in devices:
        for proc in _try(nvml, "nvmlDeviceGetComputeRunningProcesses", handle) or []:
            pid = int(getattr(proc, "pid", 0))
            if pid in mine:
                continue
            try:
                name = psutil.Process(pid).name()
            except psutil.Error:
                name = "?"
            used = getattr(proc, "usedGpuMemory", None)
            seen.append({"gpu": label, "pid": pid, "name": name,
                         "memory_mb": round(used / 1e6) if isinstance(used, int) else None})
    return seen


def running_pids(nvml: Any, handles: list[Any]) -> list[int]:
    """The pids of every compute process on these GPUs (cheap: no process-tree walk)."""
    return [int(getattr(proc, "pid", 0)) for handle in handles
            for proc in _try(nvml, "nvmlDeviceGetComputeRunningProcesses", handle) or []]
