"""What reasoning costs, mode against mode: the figures behind ``joulescore compare-reasoning``.

Each mode is an ordinary stored run (natural protocol, the mode's own token
budget), so any of them can be shown or resumed alone; this module only lines
their records up against the baseline (``off`` when it is among the modes).
"""

from __future__ import annotations

from typing import Any

from joulescore.errors import BadInput
from joulescore.model.reasoning import DEFAULT_BUDGETS, MODES
from joulescore.model.record import RunRecord
from joulescore.store.sqlite import Store


def parse_modes(text: str) -> list[str]:
    """``off,on`` -> ["off", "on"]; unknown or repeated modes are a one-line error."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes:
        raise BadInput(f"--modes lists no mode; choose from: {', '.join(MODES)}")
    if bad:
        raise BadInput(f"unknown reasoning mode {', '.join(map(repr, bad))}; choose from: {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise BadInput(f"--modes lists a mode twice: {text}")
    return modes


def parse_budgets(text: str | None, modes: list[str]) -> dict[str, int]:
    """``off=64,on=256`` over the defaults; every budget at least one token."""
    budgets = {m: DEFAULT_BUDGETS[m] for m in modes}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        mode, sep, value = part.partition("=")
        mode = mode.strip()
        if not sep or mode not in modes:
            raise BadInput(f"--budgets takes MODE=TOKENS for the modes compared ({', '.join(modes)}), got {part!r}")
        try:
            budgets[mode] = int(value)
        except ValueError:
            raise BadInput(f"--budgets: {value!r} is not a whole number of tokens") from None
        if budgets[mode] < 1:
            raise BadInput(f"--budgets: {mode} needs at least 1 token, got {budgets[mode]}")
    return budgets


def _accuracy(record: RunRecord) -> float | None:
    q = record.quality
    return q.value if q.higher_is_better and q.value is not None else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def mode_row(mode: str, record: RunRecord) -> dict[str, Any]:
    """One mode's figures from its run record."""
    counts, energy = record.counts, record.energy
    done = counts.succeeded
    acc = _accuracy(record)
    correct = round(acc * record.quality.n) if acc is not None else None
    plan = record.reasoning_plan()
    return {
        "mode": mode,
        "run_id": record.run_id,
        "status": record.status,
        "method": plan.method if plan else None,
        "family": plan.family if plan else None,
        "budget": record.config["max_new_tokens"],
        "prompts": done,
        "total_j": energy.total_j,
        "j_per_query": record.j_per_query,
        "j_per_query_low": record.interval.j_per_query_low if record.interval else None,
        "j_per_query_high": record.interval.j_per_query_high if record.interval else None,
        "interval_half_width_pct": record.interval.half_width_pct if record.interval else None,
        "sampled": bool(record.sampling and record.sampling.sampled),
        "prompts_available": record.task.num_prompts,
        "reasoning_j": energy.reasoning_j,
        "answer_j": energy.answer_j,
        "output_tokens_per_query": counts.output_tokens / done if done else None,
        "reasoning_tokens_per_query": (counts.reasoning_tokens or 0) / done if done else None,
        "truncated": counts.truncated,
        "reasoning_truncated": counts.reasoning_truncated,
        "accuracy": acc,
        "correct": correct,
        "j_per_correct": energy.total_j / correct if correct else None,
        "latency_mean_s": record.latency.mean_s,
        "meter_kind": record.meter.kind,
    }


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios and differences against the baseline row, and the one-line verdict."""
    base = next((r for r in rows if r["mode"] == "off"), rows[0])
    verdicts = []
    for r in rows:
        r["energy_ratio"] = _ratio(r["j_per_query"], base["j_per_query"])
        r["tokens_ratio"] = _ratio(r["output_tokens_per_query"], base["output_tokens_per_query"])
        r["latency_ratio"] = _ratio(r["latency_mean_s"], base["latency_mean_s"])
        both = r["accuracy"] is not None and base["accuracy"] is not None
        r["accuracy_change_points"] = 100 * (r["accuracy"] - base["accuracy"]) if both else None
        if r is base or r["energy_ratio"] is None:
            continue
        gain = (f"{r['accuracy_change_points']:+.1f} points of accuracy" if both
                else "no accuracy score on this task")
        verdicts.append(f"{r['mode']}: {r['energy_ratio']:.3g}x the energy for {gain}")
    verdict = "; ".join(verdicts) + f" (vs {base['mode']})" if verdicts else "one mode only: nothing to compare"
    return {"baseline": base["mode"], "modes": rows, "verdict": verdict}


def stored_rows(run_ids: list[str], store: Store) -> tuple[list[dict[str, Any]], str, str]:
    """Rows for runs already stored (e.g. finished with ``run --resume``): model, task and mode from each."""
    rows, names = [], set()
    for run_id in run_ids:
        record = store.record(run_id)
        plan = record.reasoning_plan()
        if plan is None:
            raise BadInput(f"run {run_id} was not run with --reasoning: nothing to compare")
        names.add((record.model.name, record.task.name))
        rows.append(mode_row(plan.mode, record))
    if len(names) != 1:
        raise BadInput(f"--runs mixes models or tasks: {sorted(names)}")
    model, task = names.pop()
    return rows, model, task
