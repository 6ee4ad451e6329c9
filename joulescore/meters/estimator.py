"""The estimator: energy from CPU time and a published power model, with a band.

For machines with no energy counter (most cloud VMs).  It is an estimate and
every figure it produces says so.  The model is written up in
docs/methodology.md; in short, for the machine's allocation of ``n`` vCPUs and
``ram_gb`` of memory over a window of ``wall_s`` seconds in which the measured
process tree used ``cpu_s`` seconds of CPU time:

    cpu_j  = n * idle_w_per_vcpu * wall_s + (max_w_per_vcpu - idle_w_per_vcpu) * cpu_s
    dram_j = ram_gb * w_per_gb * wall_s

The coefficients come from the shipped reference tables (Cloud Carbon
Footprint per-vCPU watts, or the Teads TDP curve), and the low/high band from
the spread of the same vendor's peer CPUs in those tables.

Attribution on a shared machine: the idle terms (the allocation's idle CPU
power and DRAM) are charged to the run by its share of the busy CPU time,
``own / (own + others)``, while other processes are busy; ``others`` is their
CPU time on the run's CPUs (``/proc/stat`` minus the run's tree) beyond a 2%
background floor, taken over the last :data:`SHARE_WINDOW_S` seconds.  On a
quiet machine the share is 1 and nothing changes.  The whole-machine figure a
wall-socket meter would see (all idle power, and the others' dynamic power
too) is kept beside it as the detail counters ``cpu:machine`` and
``dram:machine``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import psutil

from joulescore import hardware
from joulescore.hardware import allowed_cpus
from joulescore.meters.base import Domain, Meter, MeterStatus, Provenance, Reading, now_s
from joulescore.meters.interference import CpuStat, read_proc_stat
from joulescore.reference import as_float, load_table

# CCF rows older than Broadwell (2014) are not peers of a current CPU: their
# per-vCPU watts are 2-4x today's and would swamp the band.
_LEGACY = {"Sandy Bridge", "Ivy Bridge", "Haswell"}
_CCF_ALIASES = {"Sky Lake": "Skylake"}
#: others' CPU time below this share of the allocation is background (daemons, the shell), not a neighbour
ATTRIBUTION_FLOOR = 0.02
#: the run's share of busy CPU time is taken over this many trailing seconds, so clock ticks average out
SHARE_WINDOW_S = 2.0


@dataclass(frozen=True)
class VcpuWatts:
    idle_w: float
    max_w: float
    label: str
    source: str


@dataclass(frozen=True)
class CpuPowerModel:
    """Per-vCPU watts at idle and full load, with the band's low and high ends."""

    central: VcpuWatts
    low: VcpuWatts
    high: VcpuWatts


@dataclass(frozen=True)
class RamPowerModel:
    w_per_gb: float
    low_w_per_gb: float
    high_w_per_gb: float
    sources: tuple[str, ...]


def _ccf_rows() -> list[VcpuWatts]:
    rows = []
    for row in load_table("ccf_cpu_coefficients"):
        if not row["scope"].startswith("ccf_app"):
            continue
        arch = _CCF_ALIASES.get(row["microarchitecture"], row["microarchitecture"])
        idle, peak = as_float(row["min_watts_per_vcpu"]), as_float(row["max_watts_per_vcpu"])
        if idle is not None and peak is not None:
            rows.append(VcpuWatts(idle, peak, f"CCF {arch}", row["source"]))
    return rows


def _teads_ratios() -> tuple[float, float, str]:
    ratios: dict[str, float] = {}
    source = ""
    for row in load_table("power_curve_models"):
        if row["model"] == "Teads/Boavizta CPU power per unit TDP":
            ratios[row["parameter"]] = float(row["value"])
            source = row["source"]
    return ratios["P(0% load)/TDP"], ratios["P(100% load)/TDP"], source


def _tdp_rows() -> list[tuple[str, str, VcpuWatts]]:
    """Per-vCPU watts derived from each server CPU's TDP with the Teads curve."""
    idle_ratio, max_ratio, curve_source = _teads_ratios()
    rows = []
    for row in load_table("cpus"):
        tdp, threads = as_float(row["tdp_w"]), as_float(row["threads"])
        if tdp is None or not threads:
            continue
        watts = VcpuWatts(
            tdp * idle_ratio / threads,
            tdp * max_ratio / threads,
            f"Teads curve on {row['name']} TDP {tdp:.0f} W / {threads:.0f} threads",
            f"{row['source']} ; {curve_source}",
        )
        rows.append((row["vendor"], row["microarchitecture"], watts))
    return rows


def _vendor(label: str) -> str:
    if "Graviton" in label or "Arm" in label:
        return "Arm"
    return "AMD" if ("AMD" in label or "EPYC" in label or "Zen" in label) else "Intel"


def cpu_power_model(microarchitecture: str | None, vendor_id: str) -> CpuPowerModel:
    """Pick the per-vCPU watts for this CPU, and its band from same-vendor peers."""
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "ARM": "Arm", "Ampere": "Arm"}.get(vendor_id, "")
    ccf = _ccf_rows()
    tdp = _tdp_rows()
    central: VcpuWatts | None = None
    if microarchitecture:
        central = next((r for r in ccf if r.label == f"CCF {microarchitecture}"), None)
        if central is None:
            central = next((w for _, arch, w in tdp if arch == microarchitecture), None)
    if central is None:
        central = next(r for r in ccf if r.label.startswith("CCF AWS average"))
        central = VcpuWatts(central.idle_w, central.max_w,
                            "CCF average for an unknown microarchitecture", central.source)
    peers = [r for r in ccf if "average" not in r.label and "median" not in r.label
             and r.label.removeprefix("CCF ") not in _LEGACY]
    peers += [w for v, _, w in tdp if v in ("Intel", "AMD")]
    if vendor:
        peers = [p for p in peers if _vendor(p.label) == vendor] or peers
    peers.append(central)
    low = VcpuWatts(min(p.idle_w for p in peers), min(p.max_w for p in peers), "peer minimum", "")
    high = VcpuWatts(max(p.idle_w for p in peers), max(p.max_w for p in peers), "peer maximum", "")
    return CpuPowerModel(central, low, high)


def ram_power_model() -> RamPowerModel:
    """Watts per GB of DRAM: the midpoint of CCF (0.392) and Boavizta (0.284), band across both."""
    ccf_w = boavizta_w = None
    sources = []
    for row in load_table("ccf_other_coefficients"):
        if row["parameter"] == "memory energy coefficient":
            ccf_w = float(row["value"]) * 1000.0  # kWh per GB-hour -> W per GB
            sources.append(row["source"])
    for row in load_table("power_curve_models"):
        if row["model"].startswith("Boavizta RAM"):
            boavizta_w = float(row["value"])
            sources.append(row["source"])
    assert ccf_w is not None and boavizta_w is not None, "reference tables lack the RAM coefficients"
    return RamPowerModel((ccf_w + boavizta_w) / 2, min(ccf_w, boavizta_w), max(ccf_w, boavizta_w), tuple(sources))


def own_cpu_s() -> float:
    """CPU seconds of this process (all threads) and its reaped children; a cheap syscall."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def tree_cpu_s(pid: int | None = None) -> float:
    """CPU seconds of a process, its reaped children and its live descendants (with what they reaped).

    Slower than :func:`own_cpu_s` (it walks /proc), so used only where live
    children do the work: ``joulescore measure -- CMD`` and served engines.
    """
    proc = psutil.Process(pid)
    ct = proc.cpu_times()
    total = ct.user + ct.system + ct.children_user + ct.children_system
    for child in proc.children(recursive=True):
        try:
            ct = child.cpu_times()
            # with the children it reaped: a shell's finished commands count before the shell itself is reaped
            total += ct.user + ct.system + ct.children_user + ct.children_system
        except psutil.Error:
            continue  # exited between listing and reading: counted once reaped
    return total


class EstimatorMeter(Meter):
    """CPU and DRAM energy estimated from CPU time; the fallback on every machine.

    ``attribute``: share the idle terms out by the run's share of busy CPU time (see the module's
    docstring).  ``machine_stat`` reads the allocation's cumulative CPU seconds (default: /proc/stat
    over the CPUs this process may use, when ``cpu_seconds`` is a real process count).
    """

    name = "estimator"

    def __init__(
        self,
        cpu_model: CpuPowerModel | None = None,
        ram_model: RamPowerModel | None = None,
        vcpus: int | None = None,
        ram_gb: float | None = None,
        cpu_seconds: Callable[[], float] = own_cpu_s,
        attribute: bool = True,
        machine_stat: Callable[[], CpuStat | None] | None = None,
    ) -> None:
        info = hardware.cpu_info()
        self.cpu_model = cpu_model or cpu_power_model(info.microarchitecture, info.vendor)
        self.ram_model = ram_model or ram_power_model()
        self.vcpus = vcpus or hardware.logical_cpus()
        self.ram_gb = ram_gb if ram_gb is not None else hardware.ram_gb()
        self._cpu_seconds = cpu_seconds
        if machine_stat is None and cpu_seconds in (own_cpu_s, tree_cpu_s):
            machine_stat = partial(read_proc_stat, allowed_cpus())
        self._machine = machine_stat if attribute else None
        self._t0 = now_s()
        self._c0 = cpu_seconds()
        stat = self._machine() if self._machine is not None else None
        if stat is None:
            self._machine = None
        #: the last read: (time, own CPU s, machine busy s); and the trailing ones the share is taken over
        self._last = (self._t0, self._c0, stat.busy_s if stat is not None else 0.0)
        self._trail: deque[tuple[float, float, float]] = deque([self._last])
        #: cumulative (central, low, high) joules per domain: attributed, and whole-machine
        self._att = {d: [0.0, 0.0, 0.0] for d in (Domain.CPU, Domain.DRAM)}
        self._whole = {d: 0.0 for d in (Domain.CPU, Domain.DRAM)}
        self.share = 1.0

    @property
    def attributing(self) -> bool:
        """Whether the idle terms are shared out by CPU time (the machine's CPU time is readable)."""
        return self._machine is not None

    def _run_share(self, t: float, own: float, busy: float) -> float:
        """The run's share of the busy CPU time over the trailing window, others' background floor excluded."""
        self._trail.append((t, own, busy))
        while len(self._trail) > 2 and t - self._trail[1][0] >= SHARE_WINDOW_S:
            self._trail.popleft()
        t0, own0, busy0 = self._trail[0]
        wall = t - t0
        if wall <= 0:
            return self.share
        d_own = max(0.0, own - own0)
        others = max(0.0, (busy - busy0) - d_own - ATTRIBUTION_FLOOR * self.vcpus * wall)
        return d_own / (d_own + others) if others > 0 else 1.0

    def _advance(self, t: float) -> None:
        """Fold the time since the last read into the cumulative counters."""
        t_last, c_last, b_last = self._last
        dt = t - t_last
        if dt <= 0:
            return
        own = self._cpu_seconds()
        d_cpu = min(max(0.0, own - c_last), dt * self.vcpus)
        stat = self._machine() if self._machine is not None else None
        busy = stat.busy_s if stat is not None else b_last
        if stat is not None:
            self.share = self._run_share(t, own, busy)
        m, r = self.cpu_model, self.ram_model
        for k, (watts, w_per_gb) in enumerate(((m.central, r.w_per_gb), (m.low, r.low_w_per_gb),
                                               (m.high, r.high_w_per_gb))):
            idle_j = self.vcpus * watts.idle_w * dt
            self._att[Domain.CPU][k] += idle_j * self.share + (watts.max_w - watts.idle_w) * d_cpu
            self._att[Domain.DRAM][k] += self.ram_gb * w_per_gb * dt * self.share
        if stat is not None:
            # everything busy on the allocation, ours and the others': what a wall-socket meter would see
            d_busy = min(max(d_cpu, busy - b_last), dt * self.vcpus)
            self._whole[Domain.CPU] += self.vcpus * m.central.idle_w * dt + (m.central.max_w - m.central.idle_w) * d_busy
            self._whole[Domain.DRAM] += self.ram_gb * r.w_per_gb * dt
        self._last = (t, own, busy)

    def _energy(self, watts: VcpuWatts, w_per_gb: float, wall_s: float, cpu_s: float) -> dict[Domain, float]:
        return {
            Domain.CPU: self.vcpus * watts.idle_w * wall_s + (watts.max_w - watts.idle_w) * cpu_s,
            Domain.DRAM: self.ram_gb * w_per_gb * wall_s,
        }

    def read(self) -> Reading:
        t = now_s()
        self._advance(t)
        detail = {f"{d.value}:machine": j for d, j in self._whole.items()} if self.attributing else {}
        return Reading(
            timestamp_s=t,
            energy_j={d: v[0] for d, v in self._att.items()},
            low_j={d: v[1] for d, v in self._att.items()},
            high_j={d: v[2] for d, v in self._att.items()},
            detail_j=detail,
        )

    def uncertainty_pct(self) -> float:
        """Half the band's width at full load, as a share of the central figure."""
        wall_s, cpu_s = 1.0, float(self.vcpus)
        m, r = self.cpu_model, self.ram_model
        mid = sum(self._energy(m.central, r.w_per_gb, wall_s, cpu_s).values())
        low = sum(self._energy(m.low, r.low_w_per_gb, wall_s, cpu_s).values())
        high = sum(self._energy(m.high, r.high_w_per_gb, wall_s, cpu_s).values())
        return 100.0 * max(high - mid, mid - low) / mid if mid else 0.0

    def provenance(self) -> Provenance:
        m = self.cpu_model.central
        return Provenance(
            kind="estimated",
            sources=(f"estimator: {m.label}", m.source, *self.ram_model.sources),
            includes=(
                f"cpu: {self.vcpus} vCPUs, idle {m.idle_w:.3f} W + dynamic "
                f"{m.max_w - m.idle_w:.3f} W per busy vCPU (process tree CPU time)",
                f"dram: {self.ram_gb:.1f} GB x {self.ram_model.w_per_gb:.3f} W/GB",
            ),
            uncertainty_pct=self.uncertainty_pct(),
            notes=("no energy counter read: figures are a model, not a measurement",
                   *(("idle CPU and DRAM power shared out by the run's share of busy CPU time while other "
                      "processes were busy (docs/methodology.md)",) if self.attributing else ())),
            domains={d: {"kind": "estimated", "source": f"estimator: {m.label}"} for d in ("cpu", "dram")},
        )

    @staticmethod
    def status() -> MeterStatus:
        info = hardware.cpu_info()
        model = cpu_power_model(info.microarchitecture, info.vendor)
        return MeterStatus(
            name="estimator",
            available=True,
            reason=f"always available; coefficients for {info.display}: {model.central.label}",
            covers=("cpu", "dram"),
            resolution="CPU-time (process tree), per read",
            kind="estimated",
        )
