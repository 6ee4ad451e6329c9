"""compare's statistics: the paired bootstrap covers a known ratio at its nominal rate; the verdict's rules."""

from __future__ import annotations

import numpy as np
import pytest

from joulescore.bench.paired import (
    LEVEL,
    Side,
    difference_interval,
    prompts_to_settle,
    ratio_interval,
    verdict,
)


def _per_query(energy_j: np.ndarray) -> Side:
    rows = np.atleast_2d(energy_j)
    return Side(rows, np.ones_like(rows))


def _pair(rng: np.random.Generator, n: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt energies as two runs on the same prompts give them: each prompt's own cost (right-skewed,
    shared by A and B), times each run's independent noise (mean 1).  The population B/A is ``ratio``."""
    base = rng.gamma(2.0, 5.0, n)
    a = base * rng.gamma(25.0, 1 / 25.0, n)
    b = base * ratio * rng.gamma(25.0, 1 / 25.0, n)
    return a, b


def test_the_paired_interval_covers_a_known_ratio_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(2025)
    draws, n, true_ratio = 400, 60, 1.3
    hits = 0
    for d in range(draws):
        a, b = _pair(rng, n, true_ratio)
        bounds = ratio_interval(_per_query(a), _per_query(b), paired=True, resamples=800, seed=d)
        assert bounds is not None
        hits += bounds[0] <= true_ratio <= bounds[1]
    coverage = hits / draws
    sampling_sd = (LEVEL * (1 - LEVEL) / draws) ** 0.5  # 0.011 at 400 draws
    assert abs(coverage - LEVEL) <= 3 * sampling_sd + 0.01, coverage


def test_pairing_makes_the_interval_far_narrower_than_unpaired() -> None:
    a, b = _pair(np.random.default_rng(7), 60, 1.0)
    paired = ratio_interval(_per_query(a), _per_query(b), paired=True)
    unpaired = ratio_interval(_per_query(a), _per_query(b), paired=False)
    assert paired is not None and unpaired is not None
    assert (paired[1] - paired[0]) * 3 < unpaired[1] - unpaired[0]


def test_the_unpaired_interval_covers_a_known_ratio() -> None:
    rng = np.random.default_rng(99)
    draws, hits = 200, 0
    for d in range(draws):
        a = rng.gamma(4.0, 2.5, 80)
        b = rng.gamma(4.0, 2.5 * 0.8, 70)  # different prompts, B costs 0.8x
        bounds = ratio_interval(_per_query(a), _per_query(b), paired=False, resamples=800, seed=d)
        assert bounds is not None
        hits += bounds[0] <= 0.8 <= bounds[1]
    assert 0.89 <= hits / draws <= 0.99, hits / draws


def test_a_group_of_repeats_carries_the_runs_spread() -> None:
    """Three repeats whose levels differ by a few percent: the group's interval is wider than one run's."""
    rng = np.random.default_rng(3)
    base = rng.gamma(2.0, 5.0, 60)
    runs_a = np.stack([base * level * rng.gamma(400.0, 1 / 400.0, 60) for level in (0.94, 1.0, 1.06)])
    runs_b = np.stack([base * level * rng.gamma(400.0, 1 / 400.0, 60) for level in (0.95, 1.02, 1.07)])
    group = ratio_interval(_per_query(runs_a), _per_query(runs_b), paired=True)
    single = ratio_interval(_per_query(runs_a[1]), _per_query(runs_b[1]), paired=True)
    assert group is not None and single is not None
    assert group[1] - group[0] > 2 * (single[1] - single[0])
    assert group[0] < 1.0 < group[1]


def test_failed_prompts_cost_energy_but_answer_nothing() -> None:
    a = Side(np.array([[10.0] * 10]), np.array([[1.0] * 10]))
    b = Side(np.array([[10.0] * 10]), np.array([[1.0] * 5 + [0.0] * 5]))  # same energy, half the answers
    assert b.point() == pytest.approx(20.0)
    bounds = ratio_interval(a, b, paired=True)
    assert bounds is not None and bounds[0] > 1.2


@pytest.mark.parametrize(("low", "high", "expected"), [
    (1.06, 1.4, "regression"),
    (0.7, 0.94, "improvement"),
    (0.97, 1.04, "no change"),
    (0.95, 1.05, "no change"),
    (1.02, 1.08, "inconclusive"),
    (0.9, 1.1, "inconclusive"),
])
def test_the_verdict_reads_the_interval_against_the_threshold(low: float, high: float, expected: str) -> None:
    assert verdict(low, high, 0.05) == expected


def test_an_inconclusive_line_says_about_how_many_prompts_would_settle_it() -> None:
    # point 1.10, half-width 0.08: needs a half-width of 0.05, (0.08/0.05)^2 = 2.56 times the prompts
    assert prompts_to_settle(1.10, 1.02, 1.18, 0.05, 40) == 103
    # a point on the edge: no number of prompts settles it
    assert prompts_to_settle(1.05, 0.99, 1.11, 0.05, 40) is None


def test_too_few_prompts_give_no_interval() -> None:
    assert ratio_interval(_per_query(np.array([1.0])), _per_query(np.array([1.0])), paired=True) is None


def test_the_quality_difference_is_paired_too() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, 200).astype(float)
    b = a.copy()
    b[:20] = 1.0 - b[:20]  # 20 prompts flip
    bounds = difference_interval(a, b, paired=True)
    assert bounds is not None
    assert bounds[0] <= float(b.mean() - a.mean()) <= bounds[1]
