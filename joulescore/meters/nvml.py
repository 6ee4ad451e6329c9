"""NVIDIA GPU energy through NVML (the ``pynvml`` module of nvidia-ml-py).

Per GPU, the best method it allows, in this order:

1. ``counter``:  nvmlDeviceGetTotalEnergyConsumption, mJ since driver load
   (Volta and newer).  Measured.
2. ``polling``:  nvmlDeviceGetPowerUsage (mW) sampled on a background thread and
   integrated with the trapezoid rule.  Measured power, integrated by us.
3. ``estimate``: TDP (accelerators table) x utilisation
   (nvmlDeviceGetUtilizationRates), integrated the same way.  Estimated, with a band.

A GPU that refuses (MIG, vGPU guest, no permission, not supported) is left
out with a named reason, never counted as zero.  ``CUDA_VISIBLE_DEVICES``
(indices or GPU-UUIDs) selects which GPUs are measured.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from joulescore.errors import MeterUnavailable
from joulescore.meters.base import Domain, Meter, MeterKind, MeterStatus, Provenance, Reading, now_s
from joulescore.meters.nvml_devices import device_facts, other_processes, own_pids, running_pids
from joulescore.meters.poller import Polled, Poller
from joulescore.reference import as_float, load_table

Method = Literal["counter", "polling", "estimate"]
DEFAULT_POLL_INTERVAL_S = 0.05
#: Estimate band: utilisation is the share of time a kernel ran, not a share of
#: TDP, so the low end halves the central figure and the high end adds 20% of
#: TDP for the idle/memory power utilisation does not show.
EST_LOW_FACTOR = 0.5
EST_HIGH_EXTRA_TDP = 0.2


class NvmlUnavailable(MeterUnavailable):
    """NVML cannot measure any GPU here; the message says why."""


def import_nvml() -> Any:
    """The NVML binding: the one hardware boundary tests replace."""
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def error_reason(nvml: Any, exc: BaseException) -> str:
    """A named reason for an NVML error: 'no permission', 'not supported', ..."""
    code = getattr(exc, "value", None)
    names = {
        getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3): "not supported",
        getattr(nvml, "NVML_ERROR_NO_PERMISSION", 4): "no permission (NVML_ERROR_NO_PERMISSION)",
        getattr(nvml, "NVML_ERROR_GPU_IS_LOST", 15): "GPU is lost",
    }
    return names.get(code, f"NVML error: {exc}")


def tdp_w_for(gpu_name: str) -> tuple[float | None, str]:
    """The TDP of a GPU from the accelerators table, matched on its model token."""
    candidates = []
    for row in load_table("accelerators"):
        tdp = as_float(row.get("tdp_w"))
        words = row["name"].removeprefix("NVIDIA ").removeprefix("GeForce ").split()
        if tdp is None or not words or row["vendor"] != "NVIDIA":
            continue
        key = " ".join(words[:2]) if words[0] == "RTX" else words[0]
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", gpu_name):
            form = [w for w in words[1:] if w in ("PCIe", "SXM", "SXM4", "SXM5", "NVL")]
            candidates.append((any(f[:3] in gpu_name for f in form), tdp, row["name"]))
    if not candidates:
        return None, ""
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)  # form-factor match, then highest TDP
    return candidates[0][1], f"accelerators table: {candidates[0][2]}"


def visible_gpus(nvml: Any, env: Mapping[str, str] | None = None) -> tuple[list[int], list[str]]:
    """NVML indices CUDA would use under CUDA_VISIBLE_DEVICES, and problems with the variable.

    Like CUDA, an entry that names no GPU ends the list.  Numeric entries are
    NVML (PCI bus) order, which is CUDA's order with CUDA_DEVICE_ORDER=PCI_BUS_ID.
    """
    env = os.environ if env is None else env
    count = int(nvml.nvmlDeviceGetCount())
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(count)), []
    uuids = {i: _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)}
    out: list[int] = []
    problems: list[str] = []
    for item in (s.strip() for s in raw.split(",")):
        if not item:
            break
        if item.startswith("MIG-"):
            problems.append(f"{item}: MIG instance: NVML energy covers the whole GPU, not one instance")
            continue
        if re.fullmatch(r"-?\d+", item):
            index = int(item)
            if not 0 <= index < count:
                problems.append(f"CUDA_VISIBLE_DEVICES entry {item!r} names no GPU; it and later entries are ignored")
                break
        else:
            hits = [i for i, u in uuids.items() if u.startswith(item) or u.startswith(f"GPU-{item}")]
            if len(hits) != 1:
                problems.append(f"CUDA_VISIBLE_DEVICES entry {item!r} matches {len(hits)} GPUs; it and later entries are ignored")
                break
            index = hits[0]
        if index not in out:
            out.append(index)
    return out, problems


@dataclass
class GpuProbe:
    """One visible GPU and the best method it allows (None: refused, see reason)."""

    index: int
    name: str
    uuid: str
    method: Method | None
    reason: str
    handle: Any = None
    tdp_w: float | None = None
    tdp_source: str = ""

    @property
    def label(self) -> str:
        return f"gpu{self.index}"


def _probe_one(nvml: Any, index: int) -> GpuProbe:
    err = nvml.NVMLError
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name, uuid = _text(nvml.nvmlDeviceGetName(handle)), _text(nvml.nvmlDeviceGetUUID(handle))
    probe = GpuProbe(index, name, uuid, None, "", handle)
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        if current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
            probe.reason = "MIG mode enabled: NVML energy covers the whole GPU, not this process's instance"
            return probe
    except err:
        pass  # not MIG-capable
    try:
        if nvml.nvmlDeviceGetVirtualizationMode(handle) == getattr(nvml, "NVML_GPU_VIRTUALIZATION_MODE_VGPU", 2):
            probe.reason = "vGPU guest: the host does not expose this GPU's power or energy"
            return probe
    except err:
        pass
    tried = []
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        probe.method, probe.reason = "counter", "NVML total-energy counter (mJ)"
        return probe
    except err as exc:
        tried.append(f"energy counter: {error_reason(nvml, exc)}")
    try:
        nvml.nvmlDeviceGetPowerUsage(handle)
        probe.method, probe.reason = "polling", f"NVML power polling, trapezoid ({'; '.join(tried)})"
        return probe
    except err as exc:
        tried.append(f"power: {error_reason(nvml, exc)}")
    try:
        nvml.nvmlDeviceGetUtilizationRates(handle)
    except err as exc:
        tried.append(f"utilisation: {error_reason(nvml, exc)}")
        probe.reason = "; ".join(tried)
        return probe
    probe.tdp_w, probe.tdp_source = tdp_w_for(name)
    if probe.tdp_w is None:
        probe.reason = "; ".join(tried + [f"no TDP for {name!r} in the accelerators table"])
        return probe
    probe.method = "estimate"
    probe.reason = f"estimate: TDP {probe.tdp_w:.0f} W x utilisation ({'; '.join(tried)})"
    return probe


def probe_gpus(nvml: Any, env: Mapping[str, str] | None = None) -> tuple[list[GpuProbe], list[str]]:
    """Every visible GPU with its method or refusal, and CUDA_VISIBLE_DEVICES problems."""
    indices, problems = visible_gpus(nvml, env)
    return [_probe_one(nvml, i) for i in indices], problems


def torch_sync() -> None:
    """Wait for queued CUDA work, only if the caller already uses torch with CUDA."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        cuda.synchronize()


@dataclass
class _Integral:
    """Trapezoid integral of sampled (central, low, high) watts."""

    t_s: float | None = None
    w: tuple[float, float, float] = (0.0, 0.0, 0.0)
    j: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def add(self, t_s: float, w: tuple[float, float, float]) -> None:
        if self.t_s is not None and t_s > self.t_s:
            dt = t_s - self.t_s
            for k in range(3):
                self.j[k] += (self.w[k] + w[k]) / 2 * dt
        self.t_s, self.w = t_s, w


class NvmlMeter(Polled, Meter):
    """Per-GPU cumulative energy; the GPU domain is the sum over measured GPUs."""

    name = "nvml"

    def __init__(self, nvml: Any = None, env: Mapping[str, str] | None = None,
                 sync: Callable[[], None] | None = torch_sync,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S, allow_estimate: bool = True) -> None:
        try:
            self.nvml = nvml if nvml is not None else import_nvml()
        except (ImportError, OSError) as exc:
            raise NvmlUnavailable(f"pynvml not importable ({exc}); pip install 'joulescore[nvidia]'") from None
        try:
            self.nvml.nvmlInit()
            probes, self.problems = probe_gpus(self.nvml, env)
        except self.nvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML unavailable: {exc}") from None
        self.refused = [p for p in probes if p.method is None or (p.method == "estimate" and not allow_estimate)]
        self.gpus = [p for p in probes if p not in self.refused]
        if not self.gpus:
            why = [f"{p.label} {p.name}: {p.reason}" for p in self.refused] + self.problems
            raise NvmlUnavailable("no GPU measurable through NVML" + (f": {'; '.join(why)}" if why else ": none visible"))
        self._sync = sync
        self._lock = threading.Lock()
        self._base_mj = {p.index: self._counter_mj(p) for p in self.gpus if p.method == "counter"}
        self._integrals = {p.index: _Integral() for p in self.gpus if p.method != "counter"}
        self._sample()
        self._poller = Poller(poll_interval_s, self._sample, name="joulescore-nvml") if self._integrals else None

    def _counter_mj(self, p: GpuProbe) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(p.handle))

    def _watts(self, p: GpuProbe) -> tuple[float, float, float]:
        if p.method == "polling":
            w = self.nvml.nvmlDeviceGetPowerUsage(p.handle) / 1000.0
            return (w, w, w)
        assert p.tdp_w is not None
        u = self.nvml.nvmlDeviceGetUtilizationRates(p.handle).gpu / 100.0
        central = p.tdp_w * u
        return (central, EST_LOW_FACTOR * central, p.tdp_w * min(1.0, u + EST_HIGH_EXTRA_TDP))

    def _sample(self) -> None:
        with self._lock:
            for p in self.gpus:
                if p.index in self._integrals:
                    w = self._watts(p)
                    self._integrals[p.index].add(now_s(), w)

    def devices(self) -> list[dict[str, Any]]:
        return [device_facts(self.nvml, p.index, p.name, p.uuid, p.handle, p.method) for p in self.gpus]

    def sharing(self) -> list[dict[str, Any]]:
        return other_processes(self.nvml, [(p.label, p.handle) for p in self.gpus], own_pids())

    def gpu_state(self) -> dict[str, Any] | None:
        """Clock throttle reasons (OR-ed over the GPUs; 0 where a driver does not say) and others' processes."""
        mask = 0
        for p in self.gpus:
            for fn in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
                try:
                    mask |= int(getattr(self.nvml, fn)(p.handle))
                    break
                except (AttributeError, self.nvml.NVMLError):
                    continue
        # the process tree is walked only when a GPU lists a process other than this one (rare, and costly)
        listed = any(pid != os.getpid() for pid in running_pids(self.nvml, [p.handle for p in self.gpus]))
        return {"throttle_mask": mask, "other_processes": self.sharing() if listed else []}

    def read(self) -> Reading:
        if self._sync is not None:
            self._sync()
        self._sample()
        with self._lock:
            t = now_s()
            per: dict[str, tuple[float, float, float]] = {}
            for p in self.gpus:
                if p.method == "counter":
                    j = (self._counter_mj(p) - self._base_mj[p.index]) / 1000.0
                    per[p.label] = (j, j, j)
                else:
                    low, central, high = self._integrals[p.index].j
                    per[p.label] = (low, central, high)
        total = [sum(v[k] for v in per.values()) for k in range(3)]
        return Reading(t, {Domain.GPU: total[0]}, {Domain.GPU: total[1]}, {Domain.GPU: total[2]},
                       {f"gpu:{label}": v[0] for label, v in per.items()})

    def provenance(self) -> Provenance:
        estimated = [p for p in self.gpus if p.method == "estimate"]
        kind: MeterKind = "estimated" if estimated else "measured"
        methods = sorted({p.method for p in self.gpus if p.method})
        notes = [f"{p.label} {p.name} not counted: {p.reason}" for p in self.refused] + self.problems
        if any(p.method == "polling" for p in self.gpus) and self._poller is not None:
            notes.append(f"power polled every {self._poller.interval_s:.3g} s, trapezoid-integrated")
        if self._poller is not None and self._poller.error is not None:
            notes.append(f"sampler stopped early: {self._poller.error}")
        # The band's widest side at any utilisation is the low side: -(1 - EST_LOW_FACTOR).
        uncertainty = 100.0 * (1 - EST_LOW_FACTOR) if estimated else 0.0
        return Provenance(
            kind=kind,
            sources=tuple(f"NVML {m}" for m in methods),
            includes=tuple(f"gpu: {p.label} {p.name} ({p.uuid}): {p.reason}" for p in self.gpus),
            uncertainty_pct=uncertainty,
            notes=tuple(notes),
            domains={"gpu": {"kind": kind, "source": "NVML " + "+".join(methods)}},
        )


def statuses(nvml: Any = None, env: Mapping[str, str] | None = None) -> list[MeterStatus]:
    """One row for NVML, and one per visible GPU with its method or refusal."""
    covers = ("gpu",)
    try:
        nvml = nvml if nvml is not None else import_nvml()
        nvml.nvmlInit()
        probes, problems = probe_gpus(nvml, env)
    except (ImportError, OSError) as exc:
        return [MeterStatus("nvml", False, f"pynvml not importable ({exc}); pip install 'joulescore[nvidia]'", covers)]
    except Exception as exc:
        return [MeterStatus("nvml", False, f"NVML unavailable: {exc}", covers)]
    usable = [p for p in probes if p.method]
    reason = f"{len(usable)} of {len(probes)} visible GPU(s) measurable" + (f"; {'; '.join(problems)}" if problems else "")
    rows = [MeterStatus("nvml", bool(usable), reason, covers, "per GPU, see rows below",
                        "estimated" if usable and all(p.method == "estimate" for p in usable) else "measured")]
    resolution = {"counter": "1 mJ counter", "polling": f"power every {DEFAULT_POLL_INTERVAL_S} s",
                  "estimate": f"utilisation every {DEFAULT_POLL_INTERVAL_S} s"}
    for p in probes:
        rows.append(MeterStatus(f"nvml:{p.label}", p.method is not None, f"{p.name}: {p.reason}", covers,
                                resolution.get(p.method or "", ""), "estimated" if p.method == "estimate" else "measured"))
    return rows
