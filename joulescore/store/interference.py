"""The record's ``interference`` section: whether a run was disturbed, and why, from its stored windows.

The figures are gathered by :mod:`joulescore.meters.interference` (each prompt's window, in seconds) and
stored with each prompt; this module sums them and applies the run's thresholds (``RunConfig.disturbed_cpu_pct``
and ``disturbed_steal_pct``), so the record rebuilt from the rows always says the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from joulescore.meters.interference import BusyProbe, disturbing_throttle, read_cpu_freq
from joulescore.store.rows import LOADING, RowPart, WindowFigures


class StartFacts(RowPart):
    """What a run stores about the machine at its start (``RunSpec.interference``, from ``start_facts``)."""

    cpus: Optional[int] = None
    #: False for an engine behind --endpoint: its CPU time is outside the run's process tree
    attributable: bool = True
    #: others' share of the CPU while the model loaded (``BusyProbe.as_dict``)
    before_run: Optional[dict[str, Any]] = None
    cpu_freq_readable: Optional[bool] = None
    cpu_policy_capped: list[int] = []
    #: ``--threads auto``: the threads chosen and why
    threads: Optional[dict[str, Any]] = None


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * max(0.0, part) / whole, 2) if whole > 0 else None


def summarize(rows: Sequence[WindowFigures], stored: dict[str, Any] | None, others_pct_max: float,
              steal_pct_max: float) -> dict[str, Any]:
    """The record's ``interference`` section from each prompt's stored figures and the run's start facts.

    ``rows``: each measured prompt's stored window figures (empty ones for prompts stored before
    interference was recorded).  ``stored``: what was stored at the start (``RunSpec.interference``).
    """
    start = StartFacts.model_validate(stored or {}, context={LOADING: True})
    measured = [r.cpu() for r in rows if r.capacity_s is not None]
    capacity = sum(c.capacity_s for c in measured)
    others = sum(c.others_s for c in measured)
    steal = sum(c.steal_s for c in measured)
    own = sum(c.own_s for c in measured)
    attributable = start.attributable
    others_pct, steal_pct = _pct(others, capacity), _pct(steal, capacity)
    reasons: list[str] = []
    if attributable and others_pct is not None and others_pct > others_pct_max:
        reasons.append(f"other processes used {others_pct:.0f}% of the machine's CPU")
    if steal_pct is not None and steal_pct > steal_pct_max:
        reasons.append(f"the hypervisor stole {steal_pct:.0f}% of the CPU time (steal)")
    throttle = sorted({n for r in rows for n in r.gpu_throttle})
    bad_throttle = disturbing_throttle(throttle)
    if bad_throttle:
        reasons.append(f"the GPU clocks were slowed ({', '.join(bad_throttle)})")
    gpu_pids = sorted({p for r in rows for p in r.gpu_other_pids})
    if gpu_pids and attributable:
        reasons.append(f"other compute processes ran on the GPU (pid {', '.join(map(str, gpu_pids[:5]))})")
    cpu_events = sum(r.cpu_throttle_events for r in rows)
    if cpu_events:
        reasons.append(f"the CPU was thermally throttled ({cpu_events} events)")
    freq = [r.cpu_freq_min_pct for r in rows if r.cpu_freq_min_pct is not None]
    per_prompt = sum(1 for c in measured if c.capacity_s > 0 and (
        100 * c.others_s / c.capacity_s > others_pct_max or 100 * c.steal_s / c.capacity_s > steal_pct_max))
    return {
        "measured": bool(measured),
        "disturbed": bool(reasons),
        "reason": "; ".join(reasons) if reasons else None,
        "reasons": reasons,
        "others_cpu_pct": others_pct,
        "steal_pct": steal_pct,
        "own_cpu_pct": _pct(own, capacity),
        "cpus": start.cpus,
        "thresholds": {"others_cpu_pct": others_pct_max, "steal_pct": steal_pct_max},
        "prompts_disturbed": per_prompt,
        "prompts_measured": len(measured),
        "before_run": start.before_run,
        "cpu_freq_min_pct": min(freq) if freq else None,
        "cpu_freq_readable": start.cpu_freq_readable,
        "cpu_throttle_events": cpu_events if start.cpu_freq_readable else None,
        "gpu_throttle_reasons": throttle,
        "gpu_other_pids": gpu_pids,
        "threads": start.threads,
        "notes": _notes(bool(rows), bool(measured), attributable, start, throttle),
    }


def _notes(any_rows: bool, measured: bool, attributable: bool, start: StartFacts, throttle: list[str]
           ) -> list[str]:
    """What the section's figures do not show by themselves: why nothing was measured, what is not counted."""
    notes: list[str] = []
    if not measured:
        notes.append("not measured: no /proc/stat here, or the prompts were run without a watch" if any_rows
                     else "no prompt measured yet")
    if not attributable:
        notes.append("the engine runs outside joulescore's process tree (--endpoint): its own CPU time counts as "
                     "others', so others' CPU does not mark the run disturbed")
    if start.cpu_policy_capped:
        notes.append(f"CPU frequency capped by policy below the hardware maximum on CPUs "
                     f"{start.cpu_policy_capped}")
    if "sw_power_cap" in throttle:
        notes.append("the GPU ran at its power limit at times (sw_power_cap): normal under full load")
    return notes


def busy_warning(probe: BusyProbe | None, others_pct_max: float, attributable: bool) -> str | None:
    """The warning before a run on a machine that is already busy, or None."""
    if probe is None or not attributable or probe.others_pct <= others_pct_max:
        return None
    return (f"the machine is already busy: other processes used {probe.others_pct:.0f}% of its CPU over the "
            f"last {probe.window.wall_s:.1f} s; the run's figures may be disturbed (the record will say so)")


def start_facts(cpus: Sequence[int], probe: BusyProbe | None, attributable: bool,
                threads: dict[str, Any] | None) -> dict[str, Any]:
    """What a run stores about the machine at its start (``RunSpec.interference``)."""
    freq = read_cpu_freq(cpus)
    return StartFacts(
        cpus=len(cpus),
        attributable=attributable,
        before_run=probe.as_dict() if probe is not None else None,
        cpu_freq_readable=freq is not None,
        cpu_policy_capped=freq.policy_capped if freq is not None else [],
        threads=threads,
    ).model_dump()
