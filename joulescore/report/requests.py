"""The summary ``joulescore requests`` prints: per model, J per request (p50/p90), J per token, idle share.

Idle energy belongs to no model, so its share is of the whole window: idle
joules over idle plus request joules.  Percentiles are nearest-rank over the
requests that got an answer (status ok); failed and closed requests are
counted beside them, their energy included in the totals.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from joulescore.errors import BadInput
from joulescore.store.requests import RequestRow

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``7d`` as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise BadInput(f"--since {text!r} is not a duration like 90s, 30m, 1h or 7d")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100.0 * len(ordered)) - 1)]


@dataclass(frozen=True)
class ModelSummary:
    model: str
    requests: int
    ok: int
    failed: int
    energy_j: float
    p50_j: float | None
    p90_j: float | None
    output_tokens: int
    j_per_output_token: float | None
    meter_kinds: tuple[str, ...]


def summarise(rows: list[RequestRow]) -> list[ModelSummary]:
    out = []
    for model in sorted({r.model for r in rows}):
        mine = [r for r in rows if r.model == model]
        ok = [r.energy_j for r in mine if r.status == "ok"]
        tokens = sum(r.output_tokens for r in mine)
        energy = sum(r.energy_j for r in mine)
        out.append(ModelSummary(model, len(mine), len(ok), len(mine) - len(ok), energy, percentile(ok, 50),
                                percentile(ok, 90), tokens, energy / tokens if tokens else None,
                                tuple(sorted({r.meter_kind for r in mine}))))
    return out


def idle_share(request_j: float, idle_j: float) -> float | None:
    total = request_j + idle_j
    return idle_j / total if total > 0 else None
