"""What ``--precision`` would have done, replayed on a full run's stored per-prompt rows.

A full run answers every prompt in dataset order, so its rows hold each
prompt's energy and the input tokens it prefilled in that order: the full
run's J/query, and the covariate of every prompt as :mod:`joulescore.bench.population`
predicts it.  Replaying a ``--precision`` run is then walking the rows in the
order a sampled run with that seed would answer them (:func:`shuffled`) and
asking the same stop rule (:class:`PrecisionStop`) before each one, with the
plain mean or the regression estimator.  It needs no model, so every
precision, estimator and seed can be compared on one measured run.

One approximation: a replayed prompt keeps the cache reuse it had in dataset
order, where a real shuffled run's predecessor differs (on the shipped tasks
prompts share only the chat template's prefix, so the two rarely differ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from joulescore.store.estimate import Population, sampled_interval
from joulescore.store.interval import PrecisionStop, shuffled


@dataclass(frozen=True)
class Replay:
    """One replayed ``--precision`` run."""

    estimator: str
    precision_pct: float
    seed: int
    #: prompts answered before the rule stopped (all of them when it never did)
    prompts: int
    reached: bool
    j_per_query: float
    low: float
    high: float
    half_width_pct: float


def replay(energy_j: Sequence[float], ok: Sequence[bool], x: Sequence[float], precision_pct: float,
           regression: bool, seed: int = 0) -> Replay | None:
    """Replay a ``--precision`` run on a full run's rows (dataset order); ``regression`` False: the plain mean."""
    n_all = len(energy_j)
    if n_all < 2:
        return None
    population = Population(n_all, sum(x) / n_all, "replayed from a full run's rows") if regression else None
    stop = PrecisionStop(precision_pct, population=population, prompts=n_all)
    reached = False
    for i in shuffled(range(n_all), seed):
        if stop():
            reached = True
            break
        stop.add(energy_j[i], ok[i], x[i])
    est = sampled_interval(stop.energy_j, stop.ok, stop.x if regression else None, population, n_all)
    if est is None or est.half_width_pct is None:  # no figure, or J/query 0: nothing to be within a share of
        return None
    return Replay(est.estimator, precision_pct, seed, len(stop.energy_j), reached, est.j_per_query,
                  est.low, est.high, est.half_width_pct)
