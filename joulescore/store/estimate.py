"""The figure a ``--precision`` run estimates, and its interval: a regression (control-variate) estimator.

A sampled run answers n of the run's N prompts, drawn without replacement in a
shuffled order.  Per-prompt energy is heavy-tailed (chat: CV 1.3-1.6), but it
follows the tokens the engine has to prefill almost exactly, and those are
known for every prompt before the run (the engine's tokenizer, and its prefix
cache predicted from the order).  So the mean energy per prompt is estimated as

    mean_hat = ybar_s + b * (xbar_pop - xbar_s)

with ``y`` a prompt's energy, ``x`` its uncached input tokens, ``b`` the OLS
slope of the sample, ``xbar_pop`` the mean over all N prompts and ``xbar_s``
over the sample; J/query is ``mean_hat`` over the sample's answered share.
Its 95% interval is the percentile bootstrap of the same statistic (resample
the sampled rows, refit the slope, recompute).  Without covariates (a backend
that cannot tokenize before it runs) the same holds with ``b = 0``: the plain
mean.

No finite population correction: the prompts are drawn without replacement,
so ``sqrt(1 - n/N)`` would narrow the interval, but what it narrows is the
uncertainty of the N - n prompts not answered, and with heavy tails a few of
them can still move the mean (10% spikes of 80x, 2 prompts left of 120: one
spike moves J/query by 6%, while the corrected half-width says 4.8%).  Left
out, the interval is conservative by that factor (5-8% at n = 100-300 of 1,000).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from joulescore.model.spec import SamplePopulation
from joulescore.store.rows import ResultRow
from joulescore.units import J_PER_WH


def percentile_interval(stats: np.ndarray, level: float, min_kept: int = 1) -> tuple[float, float] | None:
    """The percentile bootstrap interval of ``stats``: resamples that gave no figure (NaN, inf) are dropped,
    and with fewer than ``min_kept`` left there is no interval."""
    kept = stats[np.isfinite(stats)]
    if len(kept) < max(1, min_kept):
        return None
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(kept, [alpha, 1.0 - alpha])
    return float(lo), float(hi)

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
COVARIATE = "uncached_input_tokens"
PLAIN = "plain mean"
REGRESSION = f"regression on {COVARIATE}"


@dataclass(frozen=True)
class Population:
    """What is known before the run about every one of its N prompts: their uncached input tokens."""

    #: prompts in the run (after --limit)
    prompts: int
    #: mean uncached input tokens per prompt, answered in dataset order
    covariate_mean: float
    #: how the covariate was computed (tokenizer, prefix cache, order)
    source: str
    covariate: str = COVARIATE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_spec(cls, stored: SamplePopulation | None) -> Population | None:
        """The population a run stored with its spec; None where it had none (the plain mean)."""
        if stored is None or stored.covariate_mean is None or stored.prompts is None:
            return None
        return cls(stored.prompts, stored.covariate_mean, stored.source or "", stored.covariate or COVARIATE)


def row_covariate(ok: bool, input_tokens: int, cached_input_tokens: int) -> float:
    """A stored row's x: the input tokens the engine prefilled (none for a prompt it refused)."""
    return float(input_tokens - cached_input_tokens) if ok else 0.0


def _fit(y: np.ndarray, x: np.ndarray, x_pop: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The regression estimate of the mean of y and its slope, for each row of ``y`` and ``x`` (resamples)."""
    ybar = y.mean(axis=-1)
    if x_pop is None:
        return ybar, np.zeros_like(ybar)
    xbar = x.mean(axis=-1)
    sxx = (x * x).mean(axis=-1) - xbar * xbar
    sxy = (x * y).mean(axis=-1) - xbar * ybar
    scale = np.maximum(np.abs(xbar) ** 2, 1.0) * 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > scale, sxy / sxx, 0.0)
    return ybar + slope * (x_pop - xbar), slope


def estimate(energy_j: Sequence[float], ok: Sequence[bool], x: Sequence[float] | None = None,
             x_pop: float | None = None) -> tuple[float, float] | None:
    """J/query estimated from the sample, and the slope (J per token; 0 for the plain mean)."""
    y = np.asarray(energy_j, dtype=float)
    w = np.asarray(ok, dtype=float)
    if len(y) == 0 or w.sum() == 0:
        return None
    xs = np.asarray(x, dtype=float) if x is not None and x_pop is not None else np.zeros_like(y)
    mean, slope = _fit(y, xs, x_pop if x is not None else None)
    return float(mean) / float(w.mean()), float(slope)


def bootstrap(energy_j: Sequence[float], ok: Sequence[bool], x: Sequence[float] | None = None,
              x_pop: float | None = None, level: float = LEVEL, resamples: int = RESAMPLES,
              seed: int = SEED) -> tuple[float, float] | None:
    """The percentile-bootstrap ``level`` interval of :func:`estimate` (no population correction)."""
    y = np.asarray(energy_j, dtype=float)
    w = np.asarray(ok, dtype=float)
    n = len(y)
    if n < 2 or w.sum() < 2:
        return None
    use_x = x is not None and x_pop is not None
    xs = np.asarray(x, dtype=float) if use_x else np.zeros_like(y)

    def stat(idx: np.ndarray) -> np.ndarray:
        mean, _ = _fit(y[idx], xs[idx], x_pop if use_x else None)
        answered = w[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(answered > 0, mean / answered, np.nan)

    return percentile_interval(resampled(n, resamples, seed, stat, 2_000_000), level)


def resampled(n: int, resamples: int, seed: int, stat: Callable[[np.ndarray], np.ndarray],
              cells: int) -> np.ndarray:
    """``stat`` of each of ``resamples`` bootstrap resamples of ``n`` items (a row of indices each), drawn in
    chunks of at most ``cells`` indices so that a long run's resampling stays within bounded memory."""
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, min(resamples, cells // n))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        stats[start:start + size] = stat(rng.integers(0, n, size=(size, n)))
    return stats


@dataclass(frozen=True)
class Estimate:
    """A sampled run's estimate of the N prompts' J/query, how it was made, and its interval."""

    j_per_query: float
    #: None for the plain mean
    slope_j_per_token: float | None
    covariate_population_mean: float | None
    covariate_sample_mean: float | None
    estimator: str
    #: prompts measured (n) and the prompts the estimate refers to (N)
    n: int
    prompts: int
    low: float
    high: float
    half_width_pct: float | None


def sampled_interval(energy_j: Sequence[float], ok: Sequence[bool], x: Sequence[float] | None,
                     population: Population | None, prompts: int, resamples: int = RESAMPLES,
                     seed: int = SEED) -> Estimate | None:
    """The estimate of the N prompts' J/query from a sample of n, with its interval.

    ``population`` None (or no ``x``): the plain mean.  ``prompts`` is N.
    """
    x_pop = population.covariate_mean if population is not None and x is not None else None
    point = estimate(energy_j, ok, x, x_pop)
    bounds = bootstrap(energy_j, ok, x, x_pop, resamples=resamples, seed=seed)
    if point is None or bounds is None:
        return None
    j, slope = point
    lo, hi = bounds
    return Estimate(j_per_query=j, slope_j_per_token=slope if x_pop is not None else None,
                    covariate_population_mean=x_pop,
                    covariate_sample_mean=float(np.mean(np.asarray(x, dtype=float))) if x_pop is not None else None,
                    estimator=REGRESSION if x_pop is not None else PLAIN, n=len(energy_j), prompts=prompts,
                    low=lo, high=hi, half_width_pct=100.0 * (hi - lo) / 2 / j if j else None)


def quick_half_pct(energy_j: Sequence[float], ok: Sequence[bool], x: Sequence[float] | None,
                   x_pop: float | None) -> float | None:
    """A normal-approximation half-width of the estimate (cheap): decides when the bootstrap is worth running."""
    y = np.asarray(energy_j, dtype=float)
    n = len(y)
    answered = float(np.mean(np.asarray(ok, dtype=float))) if n else 0.0
    if n < 3 or not answered:
        return None
    resid = y
    if x is not None and x_pop is not None:
        xs = np.asarray(x, dtype=float)
        mean, slope = _fit(y, xs, x_pop)
        resid = y - float(slope) * xs
        j = float(mean) / answered
    else:
        j = float(y.mean()) / answered
    if j <= 0:
        return None
    return 100.0 * 1.96 * float(resid.std(ddof=1)) / math.sqrt(n) / answered / j


def wh(j: float) -> float:
    """J/query as Wh per 1,000 queries."""
    return j * 1000 / J_PER_WH


#: what a sampled run's estimate refers to, as the record states it
REFERS_TO = ("J/query of the full run: all {n} prompts of this run answered in dataset order after the same "
             "warm-up (prefix-cache reuse predicted for that order)")


def row_x(row: ResultRow) -> float:
    """A stored row's covariate: the input tokens the engine really prefilled (0 for a failed prompt)."""
    return row_covariate(row.ok, row.input_tokens, row.extra.cached_input_tokens)
