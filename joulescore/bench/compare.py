"""``joulescore compare A B``: is B's energy different from A's, beyond the noise?

Each side is a run or a group of runs (repeats).  Runs that answered the same prompt set are compared
prompt by prompt (:mod:`joulescore.bench.paired`); others unpaired, and the output says so.  What is not
comparable (another task, protocol, hardware class or meter kind; a DISTURBED or partial run) is refused
unless ``--allow-different`` names the difference, and the output then lists what was allowed.

Drift: every run records a machine speed probe (:mod:`joulescore.bench.probe`).  When the probe's time moved
by more than the threshold between A and B, the comparison is **flagged**, not adjusted: the probe is a fixed
CPU workload, not the model, and scaling the energy by its ratio would add that workload's own error to the
verdict without a measured link between the two.  Interleaving the runs cancels drift without a model of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from joulescore.bench.compare_data import RunData
from joulescore.bench.paired import Side, difference_interval, prompts_to_settle, ratio_interval, verdict
from joulescore.errors import BadInput
from joulescore.units import J_PER_WH

#: what --allow-different may name
DIFFERENCES = ("task", "protocol", "hardware", "meter", "disturbed", "partial")
#: figure -> (numerator column, denominator column, unit, scale from the column's unit)
FIGURES: dict[str, tuple[str, str, str, float]] = {
    "j_per_query": ("energy_j", "ok", "J/query", 1.0),
    "wh_per_1000_queries": ("energy_j", "ok", "Wh/1000 queries", 1000 / J_PER_WH),
    "j_per_output_token": ("energy_j", "output_tokens", "J/token", 1.0),
    "prefill_j_per_query": ("prefill_j", "ok", "prefill J/query", 1.0),
    "decode_j_per_query": ("decode_j", "ok", "decode J/query", 1.0),
    "gpu_j_per_query": ("gpu_j", "ok", "GPU J/query", 1.0),
}
#: exit statuses: 0 no change or improvement, 1 regression, 3 inconclusive (2 is bad input)
EXIT = {"no change": 0, "improvement": 0, "regression": 1, "inconclusive": 3}


def _identity(run: RunData) -> dict[str, str]:
    rec = run.record
    task = rec.task.name + (f" (template {rec.task.template!r})" if rec.task.template else "")
    return {"task": task, "protocol": str(rec.config.get("protocol")),
            "hardware": rec.hardware.hardware_class(), "meter": rec.meter.kind}


def refusals(runs_a: Sequence[RunData], runs_b: Sequence[RunData]) -> list[tuple[str, str]]:
    """(difference, one line naming it) for each thing that makes the runs not comparable."""
    out: list[tuple[str, str]] = []
    first = runs_a[0]
    base = _identity(first)
    for run in [*runs_a[1:], *runs_b]:
        for key, value in _identity(run).items():
            if value != base[key] and key not in {k for k, _ in out}:
                out.append((key, f"different {key}: {base[key]} ({first.source}) vs {value} ({run.source})"))
    for run in [*runs_a, *runs_b]:
        it = run.record.interference
        if it is not None and it.disturbed and "disturbed" not in {k for k, _ in out}:
            out.append(("disturbed", f"run {run.source} is DISTURBED ({it.reason})"))
        if run.record.status != "complete" and "partial" not in {k for k, _ in out}:
            out.append(("partial", f"run {run.source} is {run.record.status}, not complete "
                                   f"({run.record.counts.done} of {run.record.counts.prompts} prompts)"))
    return out


def check_comparable(runs_a: Sequence[RunData], runs_b: Sequence[RunData], allowed: Sequence[str]) -> list[str]:
    """Raise a one-line error for the first difference not allowed; return the lines of those allowed."""
    unknown = [a for a in allowed if a not in DIFFERENCES]
    if unknown:
        raise BadInput(f"--allow-different {unknown[0]!r}: choose from {', '.join(DIFFERENCES)}")
    found = refusals(runs_a, runs_b)
    for key, line in found:
        if key not in allowed:
            raise BadInput(f"not comparable: {line}; --allow-different {key} compares them anyway")
    return [line for _, line in found]


def pairing(runs_a: Sequence[RunData], runs_b: Sequence[RunData]) -> tuple[bool, str]:
    """Whether every run answered the same prompts (same prompt-set sha256 and ids), and why not."""
    runs = [*runs_a, *runs_b]
    shas = {r.prompts_sha256 for r in runs}
    if None in shas:
        return False, "unpaired: a run does not record its prompt set's sha256"
    if len(shas) > 1:
        return False, "unpaired: the runs answered different prompt sets (their sha256 differ)"
    if any(r.prompt_id != runs[0].prompt_id for r in runs):
        return False, "unpaired: the runs did not store the same prompts"
    return True, f"paired on the same {len(runs[0].prompt_id)} prompts (prompt set sha256 {str(shas.pop())[:12]})"


def _side(runs: Sequence[RunData], figure: str) -> Side | None:
    num_col, den_col, _, _ = FIGURES[figure]
    if any(num_col not in r.columns for r in runs):
        return None
    if len({len(r.prompt_id) for r in runs}) > 1:
        raise BadInput(f"the runs of group {', '.join(r.source for r in runs)} answered different numbers of "
                       "prompts; a group is the repeats of one setting on the same prompts")
    return Side(np.stack([r.columns[num_col] for r in runs]), np.stack([r.columns[den_col] for r in runs]))


def compare_figure(runs_a: Sequence[RunData], runs_b: Sequence[RunData], figure: str, paired: bool,
                   threshold: float) -> dict[str, Any] | None:
    """A's and B's figure, B/A with its interval, and what that says; None where a side lacks the figure."""
    a, b = _side(runs_a, figure), _side(runs_b, figure)
    if a is None or b is None:
        return None
    scale = FIGURES[figure][3]
    point_a, point_b = a.point(), b.point()
    if point_a is None or point_b is None or point_a <= 0:
        return None
    ratio = point_b / point_a
    bounds = ratio_interval(a, b, paired)
    low, high = bounds if bounds is not None else (None, None)
    said = verdict(low, high, threshold) if low is not None and high is not None else "inconclusive"
    return {"unit": FIGURES[figure][2], "a": round(point_a * scale, 6), "b": round(point_b * scale, 6),
            "ratio": round(ratio, 4), "ratio_low": None if low is None else round(low, 4),
            "ratio_high": None if high is None else round(high, 4), "verdict": said}


def _mean_scores(runs: Sequence[RunData]) -> np.ndarray | None:
    if any(r.score is None for r in runs):
        return None
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack([r.score for r in runs if r.score is not None]), axis=0)


def quality(runs_a: Sequence[RunData], runs_b: Sequence[RunData], paired: bool) -> dict[str, Any]:
    """The task metric on both sides and B - A, with a bootstrap interval where the metric is a per-prompt mean."""
    qa = [r.record.quality.value for r in runs_a if r.record.quality.value is not None]
    qb = [r.record.quality.value for r in runs_b if r.record.quality.value is not None]
    va = statistics.fmean(qa) if qa else None
    vb = statistics.fmean(qb) if qb else None
    out: dict[str, Any] = {"metric": runs_a[0].record.quality.metric, "a": va, "b": vb,
                           "difference": None if va is None or vb is None else round(vb - va, 6),
                           "difference_low": None, "difference_high": None}
    sa, sb = _mean_scores(runs_a), _mean_scores(runs_b)
    if sa is None or sb is None:
        out["note"] = "the metric is not a mean over prompts: no interval on its difference"
        return out
    if paired:
        keep = np.isfinite(sa) & np.isfinite(sb)
        bounds = difference_interval(sa[keep], sb[keep], paired=True)
    else:
        bounds = difference_interval(sa[np.isfinite(sa)], sb[np.isfinite(sb)], paired=False)
    if bounds is not None:
        out["difference_low"], out["difference_high"] = round(bounds[0], 6), round(bounds[1], 6)
    return out


def speed(runs: Sequence[RunData]) -> dict[str, Any]:
    """p50/p90 of each answered prompt's latency (pooled over a group) and the mean tokens/s."""
    lat = np.concatenate([r.columns["latency_s"][r.columns["ok"] > 0] for r in runs])
    tps = [r.record.tokens_per_s for r in runs if r.record.tokens_per_s is not None]
    return {"latency_p50_s": round(float(np.percentile(lat, 50)), 4) if len(lat) else None,
            "latency_p90_s": round(float(np.percentile(lat, 90)), 4) if len(lat) else None,
            "tokens_per_s": round(statistics.fmean(tps), 3) if tps else None}


def _probe_s(runs: Sequence[RunData]) -> float | None:
    times = [float(t) for r in runs for t in (r.record.probe or {}).get("cpu_s", [])]
    return statistics.fmean(times) if times else None


def drift(runs_a: Sequence[RunData], runs_b: Sequence[RunData], threshold: float) -> dict[str, Any]:
    """The machine speed probe's time, B over A; flagged (not adjusted, see the module) past the threshold."""
    sa, sb = _probe_s(runs_a), _probe_s(runs_b)
    if sa is None or sb is None or sa <= 0:
        return {"ratio": None, "flagged": False,
                "note": "no machine speed probe in " + ("A" if sa is None else "B") + ": drift unknown"}
    ratio = sb / sa
    flagged = abs(ratio - 1.0) > threshold
    note = (f"the machine ran the fixed CPU probe {abs(ratio - 1) * 100:.0f}% "
            f"{'slower' if ratio > 1 else 'faster'} for B than for A, more than the {threshold:.0%} threshold: "
            "the verdict may be the machine's drift, not B's; flagged, not adjusted (the probe is not the model); "
            "interleave the runs or rerun both back to back") if flagged else \
        f"machine speed steady: probe B/A {ratio:.3f}"
    return {"a_s": round(sa, 6), "b_s": round(sb, 6), "ratio": round(ratio, 4), "flagged": flagged, "note": note}


def _side_info(runs: Sequence[RunData]) -> dict[str, Any]:
    rec = runs[0].record
    return {"runs": [r.record.run_id for r in runs], "sources": [r.source for r in runs], "model": rec.model.name,
            "backend": rec.model.backend, "task": rec.task.name, "prompts": len(runs[0].prompt_id),
            "meter": rec.meter.kind, "max_new_tokens": rec.config.get("max_new_tokens"),
            **speed(runs)}


def verdict_line(result: dict[str, Any], figure: str, threshold: float, prompts: int) -> tuple[str, int | None]:
    """The last line of the text output, and the prompts that would settle an inconclusive one."""
    f = result["figures"][figure]
    said = f["verdict"]
    if f["ratio_low"] is None:
        return f"inconclusive: too few prompts for an interval on {f['unit']}", None
    line = (f"{said}: B/A {f['unit']} {f['ratio']:.3f} (95% interval {f['ratio_low']:.3f}-{f['ratio_high']:.3f}, "
            f"threshold +/-{threshold:.0%})")
    settle = None
    if said == "inconclusive":
        settle = prompts_to_settle(f["ratio"], f["ratio_low"], f["ratio_high"], threshold, prompts)
        line += ("; the point lies on the threshold: more prompts would not settle it" if settle is None
                 else f"; about {settle} prompts would settle it")
    if result["drift"]["flagged"]:
        line += "; DRIFT flagged (see probe)"
    return line, settle


def compare(runs_a: Sequence[RunData], runs_b: Sequence[RunData], threshold: float, figure: str = "j_per_query",
            allowed: Sequence[str] = ()) -> dict[str, Any]:
    """The whole comparison, as ``--json`` prints it; ``exit_status`` is what the command exits with."""
    if figure not in FIGURES:
        raise BadInput(f"--figure {figure!r}: choose from {', '.join(FIGURES)}")
    if not 0 < threshold < 1:
        raise BadInput(f"--threshold must be between 0% and 100%, got {threshold:.4g}")
    allowed_lines = check_comparable(runs_a, runs_b, allowed)
    paired, how = pairing(runs_a, runs_b)
    figures = {name: f for name in FIGURES if (f := compare_figure(runs_a, runs_b, name, paired, threshold))}
    if figure not in figures:
        raise BadInput(f"--figure {figure}: not available for both sides (no answered prompts, or no such domain)")
    result: dict[str, Any] = {
        "a": _side_info(runs_a), "b": _side_info(runs_b), "paired": paired, "pairing": how,
        "threshold": threshold, "figure": figure, "figures": figures,
        "quality": quality(runs_a, runs_b, paired), "drift": drift(runs_a, runs_b, threshold),
        "allowed_differences": allowed_lines,
    }
    prompts = min(len(runs_a[0].prompt_id), len(runs_b[0].prompt_id))
    line, settle = verdict_line(result, figure, threshold, prompts)
    said = figures[figure]["verdict"]
    result.update(verdict=said, verdict_line=line, prompts_to_settle=settle, exit_status=EXIT[said])
    return result
