"""The advisor: which variant of a sweep to run, on energy, quality and latency together.

Energy is J per query (same task, prompts and protocol across the sweep, so
comparable); latency is each prompt's own p90 end-to-end time; quality is the
task metric's value, oriented by its ``higher_is_better`` (a metric with no
direction, like chat's length statistics, is shown but cannot constrain or
dominate).  Quality limits and deltas are in points: the metric x 100 (every
scored metric here is a fraction: accuracy, exact match, ROUGE-L, Spearman),
so ``--max-quality-drop 1`` allows one percentage point.  The Pareto set holds
the variants no other variant beats on every axis; the recommendation is the
lowest-energy variant that meets the limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.store.sqlite import Store


@dataclass
class Candidate:
    variant: str
    status: str
    run_id: str | None
    reason: str | None
    record: RunRecord | None

    @property
    def usable(self) -> bool:
        return self.record is not None and self.record.counts.succeeded > 0 and self.record.j_per_query is not None

    @property
    def energy_j(self) -> float:
        return float(self.record.j_per_query) if self.record and self.record.j_per_query is not None \
            else float("inf")

    @property
    def p90_s(self) -> float:
        p90 = self.record.latency.e2e_s.p90 if self.record else None
        return float(p90) if p90 else float("inf")

    @property
    def quality(self) -> float | None:
        return self.record.quality.value if self.record else None


def parse_seconds(text: str, flag: str = "--max-p90-latency") -> float:
    """'2s', '500ms', '1.5' -> seconds; NaN, infinity and negative durations are refused."""
    t = text.strip().lower()
    try:
        if t.endswith("ms"):
            seconds = float(t[:-2]) / 1000.0
        else:
            seconds = float(t[:-1]) if t.endswith("s") else float(t)
    except ValueError:
        raise BadInput(f"{flag}: not a duration: {text!r} (try 2s or 500ms)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise BadInput(f"{flag} must be a finite duration of 0 s or more, got {text!r} (try 2s or 500ms)")
    return seconds


def check_limits(max_quality_drop: float | None, max_p90_s: float | None) -> None:
    """Limits are finite numbers (a negative quality drop asks for a gain); a latency limit is not negative."""
    if max_quality_drop is not None and not math.isfinite(max_quality_drop):
        raise BadInput(f"--max-quality-drop must be a finite number of points, got {max_quality_drop:g}")
    if max_p90_s is not None and not (math.isfinite(max_p90_s) and max_p90_s >= 0):
        raise BadInput(f"--max-p90-latency must be a finite duration of 0 s or more, got {max_p90_s:g} s")


def candidates(store: Store, sweep_id: str) -> tuple[dict[str, Any], list[Candidate]]:
    plan, rows = store.get_sweep(sweep_id)
    out = []
    for r in rows:
        record = None
        if r["run_id"]:
            record = store.record(r["run_id"])
        out.append(Candidate(r["variant"], r["status"], r["run_id"], r["reason"], record))
    return plan, out


def _gain(c: Candidate, hib: bool | None) -> float | None:
    """Quality as 'higher is better', or None where the metric has no direction."""
    if hib is None or c.quality is None:
        return None
    return c.quality if hib else -c.quality


def drop_points(baseline: Candidate, c: Candidate, hib: bool | None) -> float | None:
    """How many points (metric x 100) of quality ``c`` loses against the baseline; negative is a gain."""
    base_gain, gain = _gain(baseline, hib), _gain(c, hib)
    if base_gain is None or gain is None:
        return None
    return 100.0 * (base_gain - gain)


def pareto(cands: list[Candidate], hib: bool | None) -> list[Candidate]:
    """Variants no other variant matches or beats on every axis and beats on one."""
    def axes(c: Candidate) -> tuple[float, ...]:
        gain = _gain(c, hib)
        return (c.energy_j, c.p90_s) + (() if gain is None else (-gain,))

    usable = [c for c in cands if c.usable]
    front = []
    for c in usable:
        a = axes(c)
        if not any(all(x <= y for x, y in zip(axes(o), a)) and axes(o) != a for o in usable if o is not c):
            front.append(c)
    return front


def advise(store: Store, sweep_id: str, max_quality_drop: float | None, max_p90_s: float | None
           ) -> dict[str, Any]:
    """The Pareto set, the recommendation and its savings against the baseline."""
    check_limits(max_quality_drop, max_p90_s)
    plan, cands = candidates(store, sweep_id)
    usable = [c for c in cands if c.usable]
    if not usable:
        raise BadInput(f"sweep {sweep_id} has no variant with a successful run to advise on")
    base_name = plan.get("baseline")
    baseline = next((c for c in usable if base_name and (c.variant == base_name or c.variant.startswith(f"{base_name}/"))),
                    usable[0])
    assert baseline.record is not None  # usable
    hib = baseline.record.quality.higher_is_better
    notes = []
    if hib is None:
        notes.append(f"quality metric {baseline.record.quality.metric!r} has no better direction: "
                     "it is shown, but --max-quality-drop cannot apply and it does not rank variants")

    def fits(c: Candidate) -> bool:
        if max_p90_s is not None and c.p90_s > max_p90_s:
            return False
        drop = drop_points(baseline, c, hib)
        if max_quality_drop is not None and drop is not None:
            return drop <= max_quality_drop + 1e-9
        return True

    front = pareto(cands, hib)
    feasible = [c for c in usable if fits(c)]
    chosen = min(feasible, key=lambda c: c.energy_j) if feasible else None
    rows = []
    for c in cands:
        rec = c.record
        rows.append({
            "variant": c.variant, "status": c.status, "run_id": c.run_id, "reason": c.reason,
            "j_per_query": rec and rec.j_per_query, "wh_per_1000_queries": rec and rec.wh_per_1000_queries,
            "j_per_output_token": rec and rec.j_per_output_token,
            "steady_j_per_output_token": rec.steady_state.j_per_output_token if rec and rec.steady_state else None,
            "tokens_per_s": rec and rec.tokens_per_s, "p90_latency_s": _finite(c.p90_s) if c.usable else None,
            "quality": c.quality, "energy_kind": rec and rec.meter.kind,
            "pareto": c in front, "meets_limits": c in feasible,
        })
    out: dict[str, Any] = {"sweep_id": sweep_id, "task": (plan.get("base") or plan).get("task", "chat"), "baseline": baseline.variant,
                           "limits": {"max_quality_drop": max_quality_drop, "max_p90_latency_s": max_p90_s},
                           "variants": rows, "pareto": [c.variant for c in front], "notes": notes,
                           "recommended": None}
    if chosen is not None:
        delta = None if chosen.quality is None or baseline.quality is None else chosen.quality - baseline.quality
        out["recommended"] = {
            "variant": chosen.variant, "run_id": chosen.run_id,
            "energy_ratio_vs_baseline": round(baseline.energy_j / chosen.energy_j, 3) if chosen.energy_j else None,
            "j_per_query": chosen.energy_j, "baseline_j_per_query": baseline.energy_j,
            "quality_delta": None if delta is None else round(delta, 6),
            "quality_delta_points": None if delta is None or hib is None else round(100 * delta, 4),
            "quality_metric": chosen.record.quality.metric if chosen.record else None,
            "p90_latency_s": _finite(chosen.p90_s), "energy_kind": chosen.record.meter.kind if chosen.record else None,
        }
    return out


def _finite(value: float) -> float | None:
    """A figure, or None where there is none (a missing p90 ranks as infinitely slow, but is not a value)."""
    return value if math.isfinite(value) else None
