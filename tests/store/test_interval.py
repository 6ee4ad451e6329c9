"""The confidence interval on J/query: coverage at its nominal rate, the --precision rule, repeats, and the flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, cli

from joulescore.store.interval import (
    LEVEL,
    MIN_PROMPTS,
    PrecisionStop,
    bootstrap_ratio,
    interval_section,
    repeats_interval,
    shuffled,
)
from joulescore.tasks.spec import Prompt
from tests.records import make_record


def test_the_bootstrap_interval_covers_the_true_mean_at_its_nominal_rate() -> None:
    # per-prompt energies as runs give them: positive and right-skewed (gamma, shape 4, mean 10 J)
    rng = np.random.default_rng(12345)
    draws, n, true_mean = 1000, 100, 10.0
    hits = 0
    for d in range(draws):
        energies = rng.gamma(4.0, true_mean / 4.0, n)
        bounds = bootstrap_ratio(energies, [True] * n, resamples=1000, seed=d)
        assert bounds is not None
        hits += bounds[0] <= true_mean <= bounds[1]
    coverage = hits / draws
    sampling_sd = (LEVEL * (1 - LEVEL) / draws) ** 0.5  # 0.0069 at 1,000 draws
    assert abs(coverage - LEVEL) <= 3 * sampling_sd + 0.01, coverage  # 0.01: the percentile method's small bias


def test_failed_prompts_cost_energy_but_answer_nothing() -> None:
    section = interval_section([10.0] * 50 + [2.0] * 10, [True] * 50 + [False] * 10)
    assert section is not None
    # J/query = 520 J / 50 answers = 10.4: the interval is around the ratio, not the mean of the rows
    assert section.j_per_query_low <= 10.4 <= section.j_per_query_high
    assert section.wh_per_1000_queries_low == pytest.approx(section.j_per_query_low / 3.6, rel=1e-5)
    assert interval_section([1.0], [True]) is None  # one prompt: no interval


def test_the_interval_is_the_same_every_time_the_record_is_rebuilt() -> None:
    energies = list(np.random.default_rng(0).gamma(2.0, 1.0, 300))
    assert interval_section(energies, [True] * 300) == interval_section(energies, [True] * 300)


def test_precision_waits_for_the_minimum_then_stops_when_narrow_enough() -> None:
    rng = np.random.default_rng(7)
    stop = PrecisionStop(2.0)
    steady = iter(rng.normal(10.0, 0.3, 400))  # CV 3%: +/-0.6% at 100 prompts
    while not stop():
        stop.add(float(next(steady)), True)
    assert len(stop.energy_j) == MIN_PROMPTS and stop.last_half_pct is not None and stop.last_half_pct <= 2.0

    wild = PrecisionStop(2.0)
    for e in rng.lognormal(0.0, 1.2, 400):  # CV ~200%: thousands of prompts would be needed
        assert not wild()
        wild.add(float(e), True)


def test_a_resumed_precision_run_counts_what_was_stored_before() -> None:
    stored = list(np.random.default_rng(3).normal(10.0, 0.3, 120))
    assert PrecisionStop(2.0, stored, [True] * 120)()


def test_the_shuffled_order_is_fixed_by_the_seed() -> None:
    prompts = [Prompt(index=i, id=f"p{i}", messages=[{"role": "user", "content": str(i)}]) for i in range(50)]
    once = [p.index for p in shuffled(prompts, 0)]
    assert once == [p.index for p in shuffled(prompts, 0)]
    assert once != list(range(50)) and sorted(once) == list(range(50))
    assert once != [p.index for p in shuffled(prompts, 1)]


def test_repeats_add_their_spread_to_the_prompts_interval() -> None:
    def rec(j: float) -> object:
        return make_record(j_per_query=j, interval={"method": "m", "n": 100, "j_per_query_low": j - 0.1,
                                                     "j_per_query_high": j + 0.1, "wh_per_1000_queries_low": 0,
                                                     "wh_per_1000_queries_high": 0})

    same = repeats_interval([rec(10.0), rec(10.0), rec(10.0)])
    assert same is not None and same["j_per_query_high"] == pytest.approx(10.1)  # no spread: the prompts' part
    apart = repeats_interval([rec(9.0), rec(10.0), rec(11.0)])
    assert apart is not None and apart["repeats"] == 3
    # t(0.975, 2) = 4.303, s = 1, k = 3: 2.484; combined with 0.1
    assert apart["j_per_query_high"] - 10.0 == pytest.approx((0.1**2 + (4.303 / 3**0.5) ** 2) ** 0.5, rel=1e-3)


@pytest.mark.parametrize(("args", "fragment"), [
    (("--precision", "abc"), "--precision: must be a percentage between 0 and 100, such as 2%, got 'abc'"),
    (("--precision", "0%"), "got '0%'"),
    (("--precision", "100"), "got '100'"),
    (("--precision", "-2%"), "got '-2%'"),
    (("--precision", "2%", "--limit", "50"), "--limit 50 is below the 100 prompts a --precision rating answers"),
    (("--threads", "many"), "--threads: takes a whole number of CPUs (at least 1) or auto, got 'many'"),
])
def test_bad_precision_or_limit_is_a_one_line_error(db: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(cli("run", *args, "--no-progress", db=db), fragment)
    assert not db.exists()


def test_board_precision_must_be_a_percentage(db: Path) -> None:
    assert_one_line_error(cli("board", "--precision", "lots", db=db), "--precision must be a percentage")


def test_compare_reasoning_refuses_a_short_limit_with_precision(db: Path) -> None:
    assert_one_line_error(cli("compare-reasoning", "--precision", "5%", "--limit", "20", db=db),
                          "--limit 20 is below the 100 prompts")
