"""One run's section of the report: its label, per-prompt figures, impact and the meter in full.

Per-prompt figures come from the stored prompt rows.  A report over thousands of
long runs would not fit in one file, so each run keeps at most
:func:`points_per_run` prompts, taken evenly by prompt index; the page says when
it shows a sample, and of how many.  Every summary figure (the label, the
leaderboard) is the record's own, over all prompts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from joulescore.impact import footprint as fp
from joulescore.impact.regions import find_region, load_regions
from joulescore.model.record import RunRecord
from joulescore.report.aies import AiesView
from joulescore.report.data import kind_label, precision_of
from joulescore.report.label import record_energy_parts

#: prompts kept per run, over all runs of a report (the file must stay small enough to mail)
POINT_BUDGET = 200_000
MIN_POINTS, MAX_POINTS = 50, 2_000


def points_per_run(runs: int) -> int:
    """How many prompts of each run the page plots: the budget shared out, within [50, 2,000]."""
    return max(MIN_POINTS, min(MAX_POINTS, POINT_BUDGET // max(1, runs)))


def _sig(value: float | None, digits: int = 5) -> float | None:
    """Rounded to significant digits: the page needs no more, and the file stays small."""
    return None if value is None else float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class ImpactContext:
    """The region and facility figures the impact summary of every run uses."""

    assumptions: fp.Assumptions

    @classmethod
    def for_region(cls, region: str) -> ImpactContext:
        return cls(fp.assumptions(find_region(region, load_regions())))

    def summary(self) -> dict[str, Any]:
        return asdict(self.assumptions)

    def of(self, record: RunRecord) -> dict[str, Any] | None:
        """Facility energy, carbon and water per query, with the meter's band; None without energy."""
        if not record.counts.succeeded or not record.energy.total_j:
            return None
        it = fp.it_energy(record)
        per = {}
        for k, j in (("central", "j_per_query"), ("low", "low_j_per_query"), ("high", "high_j_per_query")):
            f = fp.footprint(it[j], self.assumptions)
            per[k] = {"facility_kwh": f.facility_kwh, "carbon_g": f.carbon_g, "water_l": f.water_l}
        return {"per_query": per, "covers": it["covers_short"], "meter_kind": it["meter_kind"],
                "notes": [f"IT energy is {it['meter_kind']} and covers {it['covers_short']} only; facility "
                          "overheads enter through PUE.",
                          "grid figures are annual, location-based averages for the region."]}


def prompt_series(answered: list[tuple[Any, ...]], keep: int) -> dict[str, Any]:
    """Per-prompt energy, input tokens, latencies and mean power of the answered prompts (sampled evenly).

    ``answered``: the run's rows from :meth:`Store.answered_figures`, in prompt order.
    """
    step = max(1, -(-len(answered) // keep))
    elapsed_s = 0.0
    series: dict[str, list[Any]] = {"index": [], "energy_j": [], "input_tokens": [], "output_tokens": [],
                                    "ttft_s": [], "latency_s": [], "power_w": [], "elapsed_s": []}
    for i, (index, tokens_in, tokens_out, prefill_s, decode_s, prefill_j, decode_j, ttft_s, latency_s) in \
            enumerate(answered):
        duration_s, energy_j = prefill_s + decode_s, prefill_j + decode_j
        elapsed_s += duration_s
        if i % step:
            continue
        series["index"].append(index)
        series["energy_j"].append(_sig(energy_j))
        series["input_tokens"].append(tokens_in)
        series["output_tokens"].append(tokens_out)
        series["ttft_s"].append(_sig(prefill_s if ttft_s is None else ttft_s))
        series["latency_s"].append(_sig(duration_s if latency_s is None else latency_s))
        series["power_w"].append(_sig(energy_j / duration_s) if duration_s > 0 else None)
        series["elapsed_s"].append(_sig(elapsed_s))
    return {"answered": len(answered), "shown": len(series["index"]), "step": step, **series}


def label_of(record: RunRecord) -> dict[str, Any]:
    """What ``joulescore label`` draws on the card, as text the page lays out (the stars come from the board row)."""
    hw, q, cfg = record.hardware, record.quality, record.config
    return {
        "model": record.model.name, "task": record.task.name, "date": record.created_at[:10],
        "hardware": hw.describe(),
        "wh_per_1000_queries": record.wh_per_1000_queries, "j_per_output_token": record.j_per_output_token,
        "j_per_query": record.j_per_query, "kind": record.meter.kind, "mark": kind_label(record),
        "quality": f"{q.metric} = {q.value if q.value is not None else 'n/a'} over {q.n} prompts",
        # as the card says it: each domain measured with its counter or estimated with its band
        "source": "; ".join(record_energy_parts(record)),
        "footer": f"protocol {cfg.get('protocol')} (batch {cfg.get('batch_size')}, {cfg.get('max_new_tokens')} new "
                  f"tokens) | joulescore {record.tool.version} | run {record.run_id}",
    }


def reasoning_split(record: RunRecord) -> dict[str, Any] | None:
    e, c = record.energy, record.counts
    if e.reasoning_j is None and c.reasoning_tokens is None:
        return None
    return {"reasoning_j": e.reasoning_j, "answer_j": e.answer_j, "reasoning_tokens": c.reasoning_tokens,
            "answer_tokens": c.answer_tokens, "reasoning_truncated": c.reasoning_truncated,
            "reasoning_unclosed": c.reasoning_unclosed, "reasoning_unmarked": c.reasoning_unmarked}


def run_details(record: RunRecord, answered: list[tuple[Any, ...]], impact: ImpactContext, runs: int,
                intf: dict[str, Any], aies: AiesView) -> dict[str, Any]:
    """Everything one run's section shows (``intf``: its :func:`interference_view`; ``aies``: its
    :func:`~joulescore.report.aies.aies_view`, the line ``joulescore show`` prints)."""
    return {
        "run_id": record.run_id, "status": record.status, "label": label_of(record),
        "precision": precision_of(record), "energy": record.energy.model_dump(mode="json"),
        "counts": record.counts.model_dump(mode="json"), "latency": record.latency.model_dump(mode="json"),
        "meter": record.meter.model_dump(mode="json"), "config": record.config,
        "hardware": record.hardware.model_dump(mode="json"), "quality": record.quality.model_dump(mode="json"),
        "steady_state": record.steady_state.model_dump(mode="json") if record.steady_state else None,
        "errors": record.errors, "reasoning": reasoning_split(record), "impact": impact.of(record),
        "prompts": prompt_series(answered, points_per_run(runs)), "interference": intf,
        "sweep": record.sweep.model_dump(mode="json") if record.sweep else None, "aies": aies.as_dict(),
        "media": record.media.model_dump(mode="json") if record.media else None,
    }

