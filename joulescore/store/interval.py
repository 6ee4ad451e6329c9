"""Confidence intervals on a run's energy per query, and the ``--precision`` stopping rule.

J/query is the run's energy over its answered prompts, ``sum(e_i) / sum(ok_i)``
(a failed prompt's energy is spent too, so it is counted, but it answers
nothing).  Its 95% interval is a percentile bootstrap over the prompts: the
prompts are resampled with replacement :data:`RESAMPLES` times with a fixed
seed, so a record rebuilt from the same rows always shows the same interval.

With ``--repeats``, each run keeps its own interval, and the spread of the
repeats is added to it: the half-width of the repeats' mean is
``sqrt(h_prompts^2 + (t * s / sqrt(k))^2)``, where ``h_prompts`` is the mean of
the runs' bootstrap half-widths (the same prompts in every repeat, so that part
does not shrink with k) and ``s`` the standard deviation of the k runs' figures
(measurement noise, which does).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from joulescore.model.record import Interval
from joulescore.store.estimate import (
    PLAIN,
    Population,
    percentile_interval,
    quick_half_pct,
    resampled,
    sampled_interval,
)
from joulescore.units import J_PER_WH

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
#: a --precision rating answers at least this many prompts before it may stop
MIN_PROMPTS = 100
#: the quick normal-approximation check must be within this factor of the precision before the bootstrap is run
PRECHECK_SLACK = 1.3
METHOD = f"percentile bootstrap over the prompts ({RESAMPLES} resamples, seed {SEED})"


T = TypeVar("T")


def shuffled(prompts: Sequence[T], seed: int) -> list[T]:
    """The prompts in the order a ``--precision`` run answers them: shuffled with a fixed seed, so
    ``--resume`` (and anyone) can repeat the order."""
    order = list(prompts)
    random.Random(f"joulescore-precision-{seed}").shuffle(order)
    return order


def bootstrap_ratio(energy_j: Sequence[float], ok: Sequence[bool], level: float = LEVEL,
                    resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """The ``level`` interval of ``sum(energy) / sum(ok)`` by percentile bootstrap; None below two answers."""
    e = np.asarray(energy_j, dtype=float)
    w = np.asarray(ok, dtype=float)
    n = len(e)
    if n < 2 or w.sum() < 2:
        return None

    def stat(idx: np.ndarray) -> np.ndarray:
        answered = w[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(answered > 0, e[idx].sum(axis=1) / answered, np.nan)

    return percentile_interval(resampled(n, resamples, seed, stat, 4_000_000), level)


def _r(value: float, digits: int = 6) -> float:
    return round(value, digits)


def _opt(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def interval_section(energy_j: Sequence[float], ok: Sequence[bool]) -> Interval | None:
    """The record's ``interval``: J/query and Wh per 1,000 queries, low and high, and the relative half-width."""
    answered = sum(1 for x in ok if x)
    if not answered:
        return None
    point = sum(energy_j) / answered
    bounds = bootstrap_ratio(energy_j, ok)
    if bounds is None:
        return None
    lo, hi = bounds
    half_pct = 100.0 * (hi - lo) / 2 / point if point else None
    wh = 1000 / J_PER_WH
    return Interval(
        level=LEVEL, method=METHOD, n=len(energy_j),
        j_per_query_low=_r(lo), j_per_query_high=_r(hi),
        wh_per_1000_queries_low=_r(lo * wh), wh_per_1000_queries_high=_r(hi * wh),
        half_width_pct=_r(half_pct, 3) if half_pct is not None else None,
        estimator=PLAIN, j_per_query=_r(point), prompts=len(energy_j),
    )


class PrecisionStop:
    """Asked before each prompt of a ``--precision`` run: has the interval become narrow enough?

    It holds every stored prompt's energy and covariate (those stored before a resume included), is
    fed each new one, and says yes once at least :data:`MIN_PROMPTS` are stored and the interval of
    the estimate (:mod:`joulescore.store.estimate`: regression on the covariate where ``population``
    is known, else the plain mean) has a half-width within ``precision_pct`` of it.  ``prompts`` is
    the run's N, whose J/query is estimated.
    """

    def __init__(self, precision_pct: float, energy_j: Sequence[float] = (), ok: Sequence[bool] = (),
                 min_prompts: int = MIN_PROMPTS, x: Sequence[float] = (), population: Population | None = None,
                 prompts: int | None = None) -> None:
        self.precision_pct = precision_pct
        self.min_prompts = min_prompts
        self.energy_j = list(energy_j)
        self.ok = list(ok)
        self.x = list(x) if population is not None else []
        self.population = population
        self.prompts = prompts if prompts is not None else (population.prompts if population else 0)
        self.last_half_pct: float | None = None

    def add(self, energy_j: float, ok: bool, x: float = 0.0) -> None:
        self.energy_j.append(energy_j)
        self.ok.append(ok)
        if self.population is not None:
            self.x.append(x)

    def __call__(self) -> bool:
        if len(self.energy_j) < self.min_prompts:
            return False
        x = self.x if self.population is not None else None
        x_pop = self.population.covariate_mean if self.population is not None else None
        quick = quick_half_pct(self.energy_j, self.ok, x, x_pop)
        if quick is None or quick > PRECHECK_SLACK * self.precision_pct:
            return False
        section = sampled_interval(self.energy_j, self.ok, x, self.population, self.prompts)
        self.last_half_pct = None if section is None else section.half_width_pct
        return self.last_half_pct is not None and self.last_half_pct <= self.precision_pct


def repeats_interval(records: Sequence[Any]) -> dict[str, Any] | None:
    """The interval of the repeats' mean J/query and Wh per 1,000 queries: each run's bootstrap plus their spread."""
    rows = [(r.j_per_query, r.interval) for r in records if r.j_per_query is not None and r.interval is not None]
    k = len(rows)
    if k == 0:
        return None
    values = [v for v, _ in rows]
    mean = statistics.fmean(values)
    h_prompts = statistics.fmean((iv.j_per_query_high - iv.j_per_query_low) / 2 for _, iv in rows)
    if k > 1:
        from scipy.stats import t as student_t

        h_runs = float(student_t.ppf(0.5 + LEVEL / 2, k - 1)) * statistics.stdev(values) / math.sqrt(k)
    else:
        h_runs = 0.0
    half = math.hypot(h_prompts, h_runs)
    wh = 1000 / J_PER_WH
    return {
        "level": LEVEL,
        "method": "each run's bootstrap half-width combined with the repeats' spread (t, k-1 df): "
                  "sqrt(h_prompts^2 + (t*s/sqrt(k))^2)",
        "repeats": k,
        "j_per_query": _r(mean),
        "j_per_query_low": _r(mean - half),
        "j_per_query_high": _r(mean + half),
        "wh_per_1000_queries": _r(mean * wh),
        "wh_per_1000_queries_low": _r((mean - half) * wh),
        "wh_per_1000_queries_high": _r((mean + half) * wh),
        "half_width_pct": _r(100 * half / mean, 3) if mean else None,
        "prompts_half_width_j": _r(h_prompts),
        "repeats_half_width_j": _r(h_runs),
    }


def estimate_section(energy_j: Sequence[float], ok: Sequence[bool], x: Sequence[float] | None,
                     population: Population | None, prompts: int, refers_to: str) -> Interval | None:
    """The record's ``interval`` for a sampled run: the estimate of the N prompts' J/query, how it was
    made (estimator, covariate means, slope, n of N) and its interval (:mod:`joulescore.store.estimate`)."""
    est = sampled_interval(energy_j, ok, x, population, prompts)
    if est is None:
        return None
    regression = est.slope_j_per_token is not None and population is not None
    wh = 1000 / J_PER_WH
    return Interval(
        level=LEVEL,
        method=f"{METHOD} of the {est.estimator} (no finite population correction)",
        n=est.n,
        j_per_query_low=_r(est.low),
        j_per_query_high=_r(est.high),
        wh_per_1000_queries_low=_r(est.low * wh),
        wh_per_1000_queries_high=_r(est.high * wh),
        half_width_pct=_r(est.half_width_pct, 3) if est.half_width_pct is not None else None,
        estimator=est.estimator,
        j_per_query=_r(est.j_per_query),
        prompts=prompts,
        covariate=population.covariate if regression and population is not None else None,
        covariate_population_mean=_opt(est.covariate_population_mean, 3) if regression else None,
        covariate_sample_mean=_opt(est.covariate_sample_mean, 3) if regression else None,
        slope_j_per_token=_opt(est.slope_j_per_token, 9) if regression else None,
        covariate_source=population.source if regression and population is not None else None,
        refers_to=refers_to,
    )
