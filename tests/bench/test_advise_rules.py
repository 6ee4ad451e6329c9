"""The advisor's rules on hand-made candidates: quality drop in points, Pareto set."""

from __future__ import annotations

from joulescore.bench.advise import Candidate, drop_points, pareto
from tests.records import make_record


def cand(name: str, j: float, p90_s: float, quality: float | None) -> Candidate:
    record = make_record(j_per_query=j, latency={"e2e_s": {"p90": p90_s}}, quality={"value": quality})
    return Candidate(name, "complete", f"run-{name}", None, record)


def test_quality_drop_is_in_points_of_the_metric() -> None:
    base, worse, better = cand("base", 10, 1, 0.80), cand("worse", 5, 1, 0.785), cand("better", 5, 1, 0.83)
    assert abs(drop_points(base, worse, True) - 1.5) < 1e-9  # 0.80 -> 0.785 is 1.5 points
    assert abs(drop_points(base, better, True) + 3.0) < 1e-9  # a gain is a negative drop
    assert abs(drop_points(base, worse, False) + 1.5) < 1e-9  # lower-is-better metrics flip the sign
    assert drop_points(base, worse, None) is None  # no direction: no drop to speak of
    assert drop_points(base, cand("none", 5, 1, None), True) is None


def test_pareto_keeps_only_undominated_variants() -> None:
    a, b, c, d = cand("a", 10, 1.0, 0.8), cand("b", 5, 2.0, 0.8), cand("c", 6, 2.5, 0.7), cand("d", 4, 3.0, 0.5)
    front = {x.variant for x in pareto([a, b, c, d], True)}
    assert front == {"a", "b", "d"}  # c costs more, is slower and worse than b
    # without a quality direction only energy and latency count: c is still dominated by b
    assert {x.variant for x in pareto([a, b, c, d], None)} == {"a", "b", "d"}
    failed = Candidate("x", "failed", None, "out of memory", None)
    assert failed not in pareto([a, failed], True)
