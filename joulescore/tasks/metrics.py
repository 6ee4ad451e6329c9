"""Quality metrics, named by task specs.  Each takes the finished responses, returns a Quality."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Response:
    """What a metric sees of one answered prompt."""

    text: str
    output_tokens: int
    reference: Any = None
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Quality:
    """The quality figure recorded beside the energy."""

    metric: str
    value: float | None
    n: int
    higher_is_better: bool | None
    details: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile, so the figure is one of the observed values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return float(ordered[int(rank) - 1])


def length_stats(responses: Sequence[Response]) -> Quality:
    """Chat has no correct answer: report how much the model wrote."""
    tokens = [r.output_tokens for r in responses]
    if not tokens:
        return Quality("output_tokens_mean", None, 0, None, note="no responses")
    return Quality(
        metric="output_tokens_mean",
        value=statistics.fmean(tokens),
        n=len(tokens),
        higher_is_better=None,
        details={
            "median": float(statistics.median(tokens)),
            "p90": _percentile(tokens, 90),
            "max": float(max(tokens)),
            "chars_mean": statistics.fmean(len(r.text) for r in responses),
        },
        note="no correctness score for chat; output length only",
    )


METRICS: dict[str, Callable[[Sequence[Response]], Quality]] = {
    "length": length_stats,
}


def score(metric: str, responses: Sequence[Response]) -> Quality:
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return METRICS[metric](responses)
