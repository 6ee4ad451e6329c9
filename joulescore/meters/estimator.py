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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from joulescore import hardware
from joulescore.meters.base import Domain, Meter, MeterStatus, Provenance, Reading, now_s
from joulescore.reference import as_float, load_table

# CCF rows older than Broadwell (2014) are not peers of a current CPU: their
# per-vCPU watts are 2-4x today's and would swamp the band.
_LEGACY = {"Sandy Bridge", "Ivy Bridge", "Haswell"}
_CCF_ALIASES = {"Sky Lake": "Skylake"}


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
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "ARM": "Arm"}.get(vendor_id, "")
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
    """CPU seconds of a process, its reaped children and its live descendants.

    Slower than :func:`own_cpu_s` (it walks /proc), so used only where live
    children do the work: ``joulescore measure -- CMD`` and served engines.
    """
    proc = psutil.Process(pid)
    ct = proc.cpu_times()
    total = ct.user + ct.system + ct.children_user + ct.children_system
    for child in proc.children(recursive=True):
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue  # exited between listing and reading: counted once reaped
    return total


class EstimatorMeter(Meter):
    """CPU and DRAM energy estimated from CPU time; the fallback on every machine."""

    name = "estimator"

    def __init__(
        self,
        cpu_model: CpuPowerModel | None = None,
        ram_model: RamPowerModel | None = None,
        vcpus: int | None = None,
        ram_gb: float | None = None,
        cpu_seconds: Callable[[], float] = own_cpu_s,
    ) -> None:
        info = hardware.cpu_info()
        self.cpu_model = cpu_model or cpu_power_model(info.microarchitecture, info.vendor)
        self.ram_model = ram_model or ram_power_model()
        self.vcpus = vcpus or hardware.logical_cpus()
        self.ram_gb = ram_gb if ram_gb is not None else hardware.ram_gb()
        self._cpu_seconds = cpu_seconds
        self._t0 = now_s()
        self._c0 = cpu_seconds()

    def _energy(self, watts: VcpuWatts, w_per_gb: float, wall_s: float, cpu_s: float) -> dict[Domain, float]:
        return {
            Domain.CPU: self.vcpus * watts.idle_w * wall_s + (watts.max_w - watts.idle_w) * cpu_s,
            Domain.DRAM: self.ram_gb * w_per_gb * wall_s,
        }

    def read(self) -> Reading:
        t = now_s()
        wall_s = t - self._t0
        # CPU time can never exceed what the allocation could deliver in the window.
        cpu_s = min(self._cpu_seconds() - self._c0, wall_s * self.vcpus)
        m, r = self.cpu_model, self.ram_model
        return Reading(
            timestamp_s=t,
            energy_j=self._energy(m.central, r.w_per_gb, wall_s, cpu_s),
            low_j=self._energy(m.low, r.low_w_per_gb, wall_s, cpu_s),
            high_j=self._energy(m.high, r.high_w_per_gb, wall_s, cpu_s),
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
            notes=("no energy counter read: figures are a model, not a measurement",),
            domains={d: {"kind": "estimated", "source": f"estimator: {m.label}"} for d in ("cpu", "dram")},
        )

    @staticmethod
    def status() -> MeterStatus:
        info = hardware.cpu_info()
        model = cpu_power_model(info.microarchitecture, info.vendor)
        return MeterStatus(
            name="estimator",
            available=True,
            reason=f"always available; coefficients: {model.central.label}",
            covers=("cpu", "dram"),
            resolution="CPU-time (process tree), per read",
            kind="estimated",
        )
