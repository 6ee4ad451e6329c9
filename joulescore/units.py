"""Units, percentiles and number formatting: one copy for the whole package.

Every printed energy figure carries its mark (MEASURED, ESTIMATED, MIXED or
published), so the mark lives here beside the number formats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

J_PER_WH = 3600.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile, so the figure is one of the observed values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return float(ordered[min(len(ordered), int(rank)) - 1])


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max; all None for no values."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": float(max(values))}


def fmt(value: float | None, spec: str = ".4g", unit: str = "") -> str:
    """A number with a format spec, or ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:{spec}}{unit}"


def fmt_sig(value: float | None, unit: str = "", digits: int = 3) -> str:
    """Significant digits, scientific outside 1e-3..1e6 (the impact tables' magnitudes)."""
    if value is None:
        return "n/a"
    if value == 0:
        return f"0{unit}"
    mag = abs(value)
    text = f"{value:.{digits}g}" if 1e-3 <= mag < 1e6 else f"{value:.{digits}e}"
    return f"{text}{unit}"


def fmt_cell(value: object, digits: int = 3) -> str:
    """A table cell: ``-`` for nothing, fixed decimals for ordinary floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def energy_mark(kind: str, source: str = "") -> str:
    """The measured/estimated mark every printed energy figure carries."""
    if kind == "published":
        return f"published ({source})"
    return {"measured": "MEASURED", "mixed": "MIXED (part estimated)"}.get(kind, "ESTIMATED")
