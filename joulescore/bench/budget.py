"""``joulescore check``: is a run within its energy budget?

A budget is judged on the upper bound of the run's 95% interval: a run passes only when even the high end
of what it may cost is within the budget, so a noisy run cannot pass by luck.  ``--point`` judges the point
figure instead (a budget with a margin already in it).  J/query and Wh/1,000 take the record's own interval
(for a sampled run, that of its estimate of the full run); J/output token is bootstrapped here from the
prompts, with the same method and seed.
"""

from __future__ import annotations

from typing import Any

from joulescore.bench.compare_data import RunData
from joulescore.bench.paired import Side, figure_interval
from joulescore.errors import BadInput

#: budget name -> (the record's figure, its unit)
BUDGETS = {"wh_per_1000_queries": "Wh/1000 queries", "j_per_query": "J/query",
           "j_per_output_token": "J/output token"}


def _figure(run: RunData, name: str) -> tuple[float | None, float | None]:
    """The point figure and its interval's upper bound."""
    rec, iv = run.record, run.record.interval
    if name == "j_per_query":
        return rec.j_per_query, iv.j_per_query_high if iv else None
    if name == "wh_per_1000_queries":
        return rec.wh_per_1000_queries, iv.wh_per_1000_queries_high if iv else None
    bounds = figure_interval(Side(run.columns["energy_j"][None, :], run.columns["output_tokens"][None, :]))
    return rec.j_per_output_token, bounds[1] if bounds else None


def check(run: RunData, budgets: dict[str, float], point: bool) -> dict[str, Any]:
    """Each budget's verdict (within / over), and ``exit_status``: 1 when any is over, else 0."""
    if not budgets:
        raise BadInput("give a budget: --max-wh-per-1000, --max-j-per-query or --max-j-per-token")
    for name, limit in budgets.items():
        if not limit > 0:
            raise BadInput(f"the {BUDGETS[name]} budget must be above 0, got {limit:g}")
    rows = []
    for name, limit in budgets.items():
        value, high = _figure(run, name)
        judged = value if point else high
        if judged is None:
            raise BadInput(f"run {run.source} has no {BUDGETS[name]}"
                           + ("" if value is None else " interval (too few prompts); use --point"))
        rows.append({"figure": name, "unit": BUDGETS[name], "budget": limit, "value": value,
                     "upper_95": high, "judged_on": "point" if point else "upper bound of the 95% interval",
                     "over": judged > limit})
    over = [r for r in rows if r["over"]]
    return {"run": run.record.run_id, "source": run.source, "meter": run.record.meter.kind, "budgets": rows,
            "within": not over, "exit_status": 1 if over else 0}

