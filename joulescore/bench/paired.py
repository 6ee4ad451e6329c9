"""The statistics of ``joulescore compare``: B/A as a ratio of means, its interval, and the verdict.

Two runs that answered the same prompts are compared prompt by prompt: the
bootstrap resamples prompts and keeps each prompt's A and B together, so the
prompts' own spread (long prompts cost more in both runs) cancels and a few
dozen prompts give a sharp ratio.  Runs on different prompts are resampled
independently (unpaired).

A side may be a group of runs (the repeats of one setting).  Each bootstrap
draw then also resamples the group's runs, so the interval holds both the
prompts' and the runs' variance.  With few runs a run-level bootstrap is
somewhat narrow (k runs resampled carry (k-1)/k of their variance): the
output names the groups so a reader can tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from joulescore.store.estimate import percentile_interval

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
#: ``--threshold``'s default: a change within 5% either way is "no change"
DEFAULT_THRESHOLD = 0.05
VERDICTS = ("regression", "improvement", "no change", "inconclusive")


@dataclass(frozen=True)
class Side:
    """One side of a comparison for one figure: ``num[r, j] / den[r, j]`` summed over prompts j, for run r.

    J/query is energy over answered prompts (a failed prompt's energy counts, it answers nothing); J/token
    is energy over output tokens.  Rows are runs of a group, columns prompts (in the same order on both
    sides when paired).
    """

    num: np.ndarray
    den: np.ndarray

    @property
    def runs(self) -> int:
        return int(self.num.shape[0])

    @property
    def prompts(self) -> int:
        return int(self.num.shape[1])

    def point(self) -> float | None:
        """The group's figure: its runs' mean per prompt, summed, over the same of the denominator (what
        each bootstrap draw computes, so the point lies inside its interval)."""
        den = float(self.den.mean(axis=0).sum())
        return float(self.num.mean(axis=0).sum()) / den if den > 0 else None


def _run_weights(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """How often each of k runs is drawn, per resample (all ones for a single run)."""
    if k == 1:
        return np.ones((size, 1))
    return rng.multinomial(k, [1.0 / k] * k, size=size).astype(float) / k


def _prompt_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.multinomial(n, [1.0 / n] * n, size=size).astype(float)


def _draws(side: Side, runs_w: np.ndarray, prompts_w: np.ndarray) -> np.ndarray:
    """The side's figure in each resample: prompts weighted by ``prompts_w``, runs by ``runs_w``."""
    num = ((runs_w @ side.num) * prompts_w).sum(axis=1)
    den = ((runs_w @ side.den) * prompts_w).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def ratio_interval(a: Side, b: Side, paired: bool, level: float = LEVEL, resamples: int = RESAMPLES,
                   seed: int = SEED) -> tuple[float, float] | None:
    """The ``level`` percentile-bootstrap interval of B/A; None when either side has under two prompts.

    ``paired``: one prompt resample is applied to both sides (A and B answered the same prompts, in the
    same column order); otherwise each side's prompts are resampled on their own.
    """
    if a.prompts < 2 or b.prompts < 2 or (paired and a.prompts != b.prompts):
        return None
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, min(resamples, 2_000_000 // max(a.prompts, b.prompts)))  # bounded memory for long runs
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        wa = _prompt_weights(rng, a.prompts, size)
        wb = wa if paired else _prompt_weights(rng, b.prompts, size)
        fa = _draws(a, _run_weights(rng, a.runs, size), wa)
        fb = _draws(b, _run_weights(rng, b.runs, size), wb)
        with np.errstate(divide="ignore", invalid="ignore"):
            stats[start:start + size] = fb / fa
    return percentile_interval(stats, level, min_kept=resamples // 2)


def verdict(low: float, high: float, threshold: float) -> str:
    """regression, improvement, no change or inconclusive, from the interval of B/A and the threshold."""
    if low > 1.0 + threshold:
        return "regression"
    if high < 1.0 - threshold:
        return "improvement"
    if low >= 1.0 - threshold and high <= 1.0 + threshold:
        return "no change"
    return "inconclusive"


def prompts_to_settle(ratio: float, low: float, high: float, threshold: float, prompts: int) -> int | None:
    """About how many prompts would make an inconclusive interval clear the edge nearest its point.

    The interval's half-width shrinks as 1/sqrt(prompts); the half-width needed is the distance from the
    point to that edge.  None when the point sits on an edge (no number of prompts settles it) or the
    interval has no width.  Between-run variance does not shrink with prompts, so this is a floor for groups.
    """
    half = (high - low) / 2
    up, down = 1.0 + threshold, 1.0 - threshold
    if ratio > up:
        needed = ratio - up
    elif ratio < down:
        needed = down - ratio
    else:
        needed = min(ratio - down, up - ratio)
    if half <= 0 or needed <= half * 0.02:
        return None
    return max(prompts + 1, math.ceil(prompts * (half / needed) ** 2))


def difference_interval(a: np.ndarray, b: np.ndarray, paired: bool, level: float = LEVEL,
                        resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """The interval of mean(b) - mean(a) (a quality score per prompt), paired or not, by bootstrap."""
    if len(a) < 2 or len(b) < 2 or (paired and len(a) != len(b)):
        return None
    rng = np.random.default_rng(seed)
    wa = _prompt_weights(rng, len(a), resamples)
    wb = wa if paired else _prompt_weights(rng, len(b), resamples)
    diffs = (wb @ b) / len(b) - (wa @ a) / len(a)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(diffs, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def figure_interval(side: Side, level: float = LEVEL, resamples: int = RESAMPLES,
                    seed: int = SEED) -> tuple[float, float] | None:
    """The ``level`` interval of one side's own figure (a budget's J/output token), by the same bootstrap."""
    if side.prompts < 2:
        return None
    rng = np.random.default_rng(seed)
    draws = _draws(side, _run_weights(rng, side.runs, resamples), _prompt_weights(rng, side.prompts, resamples))
    return percentile_interval(draws, level, min_kept=resamples // 2)
