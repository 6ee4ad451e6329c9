"""Repeat variance: the same run several times, and how much its figures move.

One run's figure hides how much it would change if run again (other load on
the machine, clocks, caches).  ``joulescore run --repeats N`` stores N
ordinary runs and reports the spread of their headline figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from joulescore.model.record import RunRecord

FIGURES = ("j_per_query", "j_per_output_token", "wh_per_1000_queries", "tokens_per_s")


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and coefficient of variation of one figure."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "stdev": None, "cv_pct": None, "min": None, "max": None}
    mean = statistics.fmean(values)
    stdev = statistics.stdev(values) if n > 1 else None
    return {
        "n": n,
        "mean": round(mean, 6),
        "stdev": round(stdev, 6) if stdev is not None else None,
        "cv_pct": round(100 * stdev / mean, 3) if stdev is not None and mean else None,
        "min": round(min(values), 6),
        "max": round(max(values), 6),
    }


def repeat_variance(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The spread of each headline figure across repeated runs of one configuration."""
    figures: dict[str, Any] = {}
    for name in FIGURES:
        values = [getattr(r, name) for r in records]
        figures[name] = spread([v for v in values if v is not None])
    from joulescore.store.interval import repeats_interval

    return {"run_ids": [r.run_id for r in records], "meter_kind": sorted({r.meter.kind for r in records}), **figures,
            "interval": repeats_interval(records)}
