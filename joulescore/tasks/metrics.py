"""Quality metrics, named by task specs.  Each takes the finished responses, returns a Quality."""

from __future__ import annotations

import re
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


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> float | None:
    """The last number written in ``text``, thousands commas dropped; None if there is none."""
    found = [m.group().replace(",", "") for m in _NUMBER.finditer(text)]
    found = [f for f in found if f.strip("-.")]
    return float(found[-1]) if found else None


def exact_number(responses: Sequence[Response]) -> Quality:
    """GSM8K-style exact match: the answer's last number equals the reference number.

    The text scored is the answer section only; a response whose reasoning
    never closed reaches the metric as an empty answer and counts as wrong.
    """
    if not responses:
        return Quality("exact_number", None, 0, True, note="no responses")
    hits = []
    for r in responses:
        got = last_number(r.text)
        want = last_number(str(r.reference)) if r.reference is not None else None
        hits.append(got is not None and want is not None and abs(got - want) < 1e-9)
    empty = sum(1 for r in responses if not r.text.strip())
    return Quality("exact_number", sum(hits) / len(hits), len(hits), True,
                   details={"correct": float(sum(hits)), "empty_answers": float(empty)},
                   note="last number of the answer vs the reference")


METRICS: dict[str, Callable[[Sequence[Response]], Quality]] = {
    "length": length_stats,
    "exact_number": exact_number,
}


def score(metric: str, responses: Sequence[Response]) -> Quality:
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return METRICS[metric](responses)
