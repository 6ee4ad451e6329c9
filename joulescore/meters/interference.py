"""Interference: what else was using the machine while a run was measured.

A rating taken beside a busy neighbour is not the model's rating: llama.cpp's
threads spin-wait for a core that is taken, and an energy figure counts the
neighbour's work or its idle power.  So every measured window also records:

- **others' CPU**: the CPU time of the run's CPUs (the ones this process may
  run on) that went to processes *outside* the run's own process tree, from
  ``/proc/stat`` (busy = user + nice + system + irq + softirq) minus the run's
  tree CPU time (the same count the estimator uses);
- **steal**: time the hypervisor gave a VM's vCPUs to someone else;
- **CPU frequency**: where ``cpufreq`` is readable, the lowest clock seen as a
  share of the CPU's maximum, a policy cap below that maximum, and thermal
  throttling events (``thermal_throttle`` counters);
- **GPUs** (from the meter, e.g. NVML): other compute processes seen during the
  run, and clock throttle reasons (thermal, power brake, power cap).

Each prompt stores its window's seconds (never percentages), so a run's figures
are sums over its rows and a resumed run reports what an uninterrupted one would.
Shares are taken of the sums: noise of one clock tick in a short window averages
out instead of being clamped into a bias.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joulescore.hardware import allowed_cpus
from joulescore.meters.poller import Polled, Poller

if TYPE_CHECKING:
    from joulescore.meters.base import Meter

PROC_STAT = Path("/proc/stat")
CPU_SYSFS = Path("/sys/devices/system/cpu")
#: how often CPU clocks and GPU state are sampled during a run (CPU time needs no sampling: it is cumulative)
SAMPLE_INTERVAL_S = 0.5
#: GPU clock throttle reasons (NVML's nvmlClocksThrottleReason* bits, a stable ABI) -> name, and whether it disturbs
GPU_THROTTLE_REASONS: dict[int, tuple[str, bool]] = {
    0x4: ("sw_power_cap", False),  # the board at its power limit: how a GPU runs flat out, not interference
    0x8: ("hw_slowdown", True),
    0x20: ("sw_thermal_slowdown", True),
    0x40: ("hw_thermal_slowdown", True),
    0x80: ("hw_power_brake_slowdown", True),
}


def _tick_s() -> float:
    try:
        return 1.0 / float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 0.01


TICK_S = _tick_s()


@dataclass(frozen=True)
class CpuStat:
    """Cumulative seconds of a set of CPUs, from /proc/stat."""

    busy_s: float
    idle_s: float
    steal_s: float
    #: busy seconds per CPU (for ``--threads auto``)
    per_cpu_busy_s: dict[int, float]

    @property
    def total_s(self) -> float:
        return self.busy_s + self.idle_s + self.steal_s


def parse_proc_stat(text: str, cpus: Collection[int] | None = None) -> CpuStat | None:
    """The CPU lines of /proc/stat summed over ``cpus`` (all of them when None); None when unparsable.

    Fields (USER_HZ ticks): user nice system idle iowait irq softirq steal guest guest_nice.
    guest time is already inside user, so it is not added again.
    """
    busy = idle = steal = 0.0
    per: dict[int, float] = {}
    aggregate: tuple[float, float, float] | None = None
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        try:
            v = [float(x) for x in fields[:8]] + [0.0] * (8 - len(fields[:8]))
        except ValueError:
            continue
        b, i, s = (v[0] + v[1] + v[2] + v[5] + v[6]) * TICK_S, (v[3] + v[4]) * TICK_S, v[7] * TICK_S
        if name == "cpu":
            aggregate = (b, i, s)
            continue
        try:
            index = int(name[3:])
        except ValueError:
            continue
        if cpus is None or index in cpus:
            busy, idle, steal = busy + b, idle + i, steal + s
            per[index] = b
    if not per:
        if aggregate is None:
            return None
        busy, idle, steal = aggregate
    return CpuStat(busy, idle, steal, per)


def read_proc_stat(cpus: Collection[int] | None = None, path: Path = PROC_STAT) -> CpuStat | None:
    """Read /proc/stat now; None where there is none (not Linux) or it cannot be read."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return parse_proc_stat(text, cpus)


@dataclass(frozen=True)
class CpuWindow:
    """The CPU figures of one window: seconds, so windows add up."""

    wall_s: float
    #: CPU seconds the run's CPUs offered in the window (busy + idle + steal)
    capacity_s: float
    own_s: float
    #: busy seconds minus the run's own: may dip below zero by a clock tick in a short window
    others_s: float
    steal_s: float

    def as_row(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in (("wall_s", self.wall_s), ("capacity_s", self.capacity_s),
                                            ("own_s", self.own_s), ("others_s", self.others_s),
                                            ("steal_s", self.steal_s))}

    @property
    def others_pct(self) -> float:
        return 100.0 * max(0.0, self.others_s) / self.capacity_s if self.capacity_s > 0 else 0.0

    @property
    def steal_pct(self) -> float:
        return 100.0 * max(0.0, self.steal_s) / self.capacity_s if self.capacity_s > 0 else 0.0


def cpu_window(begin: tuple[float, CpuStat, float], end: tuple[float, CpuStat, float]) -> CpuWindow:
    """The window between two (wall clock, /proc/stat, own CPU seconds) snapshots."""
    (t0, s0, c0), (t1, s1, c1) = begin, end
    own = max(0.0, c1 - c0)
    return CpuWindow(wall_s=t1 - t0, capacity_s=max(0.0, s1.total_s - s0.total_s), own_s=own,
                     others_s=(s1.busy_s - s0.busy_s) - own, steal_s=max(0.0, s1.steal_s - s0.steal_s))


# -- CPU clocks ---------------------------------------------------------------------------------------

def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuFreqState:
    """One look at the clocks of the run's CPUs (kHz as cpufreq gives them)."""

    #: the lowest current clock as a share of that CPU's hardware maximum
    min_pct_of_max: float | None
    #: CPUs whose policy maximum is set below the hardware maximum
    policy_capped: list[int]
    #: thermal throttle events so far (core + package counters), None where not exposed
    throttle_events: int | None


def read_cpu_freq(cpus: Sequence[int], root: Path = CPU_SYSFS) -> CpuFreqState | None:
    """The clocks of ``cpus`` where cpufreq is readable; None where it is not (most VMs)."""
    pcts: list[float] = []
    capped: list[int] = []
    events: int | None = None
    for cpu in cpus:
        base = root / f"cpu{cpu}"
        hw_max = _read_int(base / "cpufreq" / "cpuinfo_max_freq")
        cur = _read_int(base / "cpufreq" / "scaling_cur_freq")
        policy_max = _read_int(base / "cpufreq" / "scaling_max_freq")
        if hw_max and cur:
            pcts.append(100.0 * cur / hw_max)
        if hw_max and policy_max and policy_max < hw_max:
            capped.append(cpu)
        for name in ("core_throttle_count", "package_throttle_count"):
            n = _read_int(base / "thermal_throttle" / name)
            if n is not None:
                events = (events or 0) + n
    if not pcts and not capped and events is None:
        return None
    return CpuFreqState(min(pcts) if pcts else None, capped, events)


# -- the watch over a run -----------------------------------------------------------------------------

def throttle_names(mask: int) -> list[str]:
    return [name for bit, (name, _) in GPU_THROTTLE_REASONS.items() if mask & bit]


def disturbing_throttle(names: Iterable[str]) -> list[str]:
    bad = {name for name, disturbs in GPU_THROTTLE_REASONS.values() if disturbs}
    return [n for n in names if n in bad]


class InterferenceWatch(Polled):
    """Watches the machine around each measured window; ``end()`` gives the window's stored figures.

    CPU time comes from cumulative counters read at the window's edges (no thread
    needed).  CPU clocks and the GPUs' state are sampled on a background thread
    every :data:`SAMPLE_INTERVAL_S` and also at each edge, and folded into the
    window that was open.
    """

    def __init__(self, cpu_seconds: Callable[[], float], meter: Meter | None = None,
                 cpus: Sequence[int] | None = None, sample_interval_s: float = SAMPLE_INTERVAL_S,
                 stat_path: Path = PROC_STAT, sysfs: Path = CPU_SYSFS) -> None:
        self.cpus = list(cpus) if cpus is not None else allowed_cpus()
        self._cpu_seconds = cpu_seconds
        self._meter = meter
        self._stat_path = stat_path
        self._sysfs = sysfs
        self._begin: tuple[float, CpuStat, float] | None = None
        self._lock = threading.Lock()
        self.available = read_proc_stat(self.cpus, stat_path) is not None
        first = read_cpu_freq(self.cpus, sysfs)
        self._freq_readable = first is not None
        self._gpu_readable = meter is not None and meter.gpu_state() is not None
        self._throttle0 = first.throttle_events if first is not None else None
        self._throttle_now = self._throttle0
        self._reset_window()
        needs_thread = self._freq_readable or self._gpu_readable
        self._poller = Poller(sample_interval_s, self._sample, name="joulescore-interference") if needs_thread else None

    def _reset_window(self) -> None:
        self._min_freq: float | None = None
        self._gpu_mask = 0
        self._gpu_others: dict[int, dict[str, Any]] = {}

    def _sample(self, clocks: bool = True) -> None:
        """Fold one look at the GPUs (and, on the thread, the CPU clocks) into the open window."""
        freq = read_cpu_freq(self.cpus, self._sysfs) if clocks and self._freq_readable else None
        gpu = self._meter.gpu_state() if self._gpu_readable and self._meter is not None else None
        with self._lock:
            if freq is not None and freq.min_pct_of_max is not None:
                self._min_freq = freq.min_pct_of_max if self._min_freq is None else min(self._min_freq,
                                                                                        freq.min_pct_of_max)
            if freq is not None and freq.throttle_events is not None:
                self._throttle_now = freq.throttle_events
            if gpu:
                self._gpu_mask |= int(gpu.get("throttle_mask", 0))
                for proc in gpu.get("other_processes", []):
                    self._gpu_others.setdefault(int(proc["pid"]), proc)

    def _snapshot(self) -> tuple[float, CpuStat, float] | None:
        stat = read_proc_stat(self.cpus, self._stat_path)
        if stat is None:
            return None
        return time.perf_counter(), stat, self._cpu_seconds()

    def begin(self) -> None:
        """The start of a measured window."""
        with self._lock:
            self._reset_window()
        self._begin = self._snapshot()

    def end(self) -> dict[str, Any]:
        """The window's figures, as stored with its prompt (empty where nothing could be read).

        The GPUs are looked at once more here (a few NVML calls), so a short window is never missed;
        CPU clocks (a file per CPU) only on the thread.
        """
        snap = self._snapshot()
        if self._gpu_readable:
            self._sample(clocks=False)
        out: dict[str, Any] = {}
        if self._begin is not None and snap is not None:
            out.update(cpu_window(self._begin, snap).as_row())
        with self._lock:
            if self._min_freq is not None:
                out["cpu_freq_min_pct"] = round(self._min_freq, 1)
            if self._gpu_mask:
                out["gpu_throttle"] = throttle_names(self._gpu_mask)
            if self._gpu_others:
                out["gpu_other_pids"] = sorted(self._gpu_others)
            if self._throttle0 is not None and self._throttle_now is not None and self._throttle_now > self._throttle0:
                out["cpu_throttle_events"] = self._throttle_now - self._throttle0
                self._throttle0 = self._throttle_now
        self._begin = None
        return out


# -- before a run --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BusyProbe:
    """How busy the run's CPUs were before the run, over ``window.wall_s`` seconds."""

    window: CpuWindow
    cpus: int

    @property
    def others_pct(self) -> float:
        return self.window.others_pct

    @property
    def others_cores(self) -> float:
        """Others' CPU time in cores' worth (1.0: one core fully taken)."""
        w = self.window
        return max(0.0, w.others_s) / w.wall_s if w.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"window_s": round(self.window.wall_s, 3), "others_cpu_pct": round(self.others_pct, 2),
                "steal_pct": round(self.window.steal_pct, 2), "others_cores": round(self.others_cores, 2),
                "cpus": self.cpus}


class BusyProbeClock:
    """A probe started now and read later: the time in between (at least ``min_s``) is the window."""

    def __init__(self, cpu_seconds: Callable[[], float], cpus: Sequence[int] | None = None,
                 stat_path: Path = PROC_STAT) -> None:
        self.cpus = list(cpus) if cpus is not None else allowed_cpus()
        self._cpu_seconds = cpu_seconds
        self._stat_path = stat_path
        stat = read_proc_stat(self.cpus, stat_path)
        self._begin = None if stat is None else (time.perf_counter(), stat, cpu_seconds())

    def read(self, min_s: float = 1.0) -> BusyProbe | None:
        """The probe's result, waiting until ``min_s`` seconds have passed; None without /proc/stat."""
        if self._begin is None:
            return None
        left = min_s - (time.perf_counter() - self._begin[0])
        if left > 0:
            time.sleep(left)
        stat = read_proc_stat(self.cpus, self._stat_path)
        if stat is None:
            return None
        return BusyProbe(cpu_window(self._begin, (time.perf_counter(), stat, self._cpu_seconds())), len(self.cpus))


def probe_busy(cpu_seconds: Callable[[], float], seconds: float = 1.0,
               cpus: Sequence[int] | None = None) -> BusyProbe | None:
    """Others' share of the run's CPUs over ``seconds`` from now (the machine before a run)."""
    return BusyProbeClock(cpu_seconds, cpus).read(seconds)


def free_threads(probe: BusyProbe | None, cpus: int) -> tuple[int, str]:
    """``--threads auto``: the CPUs other processes do not hold, at least one, and why.

    Others' CPU time is counted in cores' worth (robust to a busy process moving
    between cores), rounded to the nearest whole core.
    """
    if probe is None:
        return cpus, f"no /proc/stat to read: all {cpus} CPUs"
    held = min(cpus - 1, int(probe.others_cores + 0.5))
    if held <= 0:
        return cpus, f"other processes held {probe.others_cores:.2f} of {cpus} CPUs at the start: all {cpus} used"
    return cpus - held, (f"other processes held {probe.others_cores:.2f} of {cpus} CPUs at the start: the "
                         f"engine got the {cpus - held} free one{'s' if cpus - held > 1 else ''}")
