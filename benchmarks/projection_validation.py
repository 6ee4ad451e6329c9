"""Leave-one-out validation of the projection model (docs/impact.md, "Projections").

    PYTHONPATH=. python benchmarks/projection_validation.py [--markdown]

Each fitted reference row is projected by the model fitted without it; the table gives predicted
central/low/high against the published J/query, the ratio, and whether the band holds it.  Rows left
out of the fit are listed with the reason.  Targets: >= 80 % inside, median |log10 error| < 0.3.
"""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass

from joulescore.impact.latency_model import FITTED_ENGINES, Row, fit, predict, reference_rows


@dataclass(frozen=True)
class Check:
    row: Row
    central_j: float
    low_j: float
    high_j: float

    @property
    def ratio(self) -> float:
        return self.central_j / self.row.measured_j

    @property
    def inside(self) -> bool:
        return self.low_j <= self.row.measured_j <= self.high_j


def leave_one_out(rows: list[Row] | None = None) -> tuple[list[Check], list[Row]]:
    """(checks of the fitted rows, rows left out of the fit)."""
    rows = reference_rows() if rows is None else rows
    fitted = [r for r in rows if r.excluded is None and r.case.engine in FITTED_ENGINES]
    checks = []
    everything = fit(fitted)
    for i, row in enumerate(fitted):
        model = fit(fitted[:i] + fitted[i + 1:], start=everything)
        p = predict(row.case, model)
        checks.append(Check(row, float(p["central_j"]), float(p["low_j"]), float(p["high_j"])))
    return checks, [r for r in rows if r not in fitted]


def summary(checks: list[Check]) -> dict[str, float]:
    return {"rows": len(checks), "inside_pct": 100 * sum(c.inside for c in checks) / len(checks),
            "median_abs_log10_error": statistics.median(abs(math.log10(c.ratio)) for c in checks)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true", help="print the docs table")
    markdown = ap.parse_args().markdown
    checks, left_out = leave_one_out()
    s = summary(checks)
    full = fit(reference_rows())
    print(f"fit on all rows: eta {', '.join(f'{e} {v:.3f}' for e, v in full.eta.items())}; step floor per layer "
          f"{', '.join(f'{e} {full.tau_s(e) * 1e3:.3f} ms' for e in full.floor_w)}; busy power "
          f"{full.power_fraction:.2f} x TDP; band x/{10 ** full.band_log10:.2f} ({full.rows} rows)")
    sep = " | " if markdown else "  "
    head = ["row", "published J", "central J", "low J", "high J", "ratio", "inside"]
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    else:
        print(sep.join(head))
    for c in checks:
        cells = [c.row.label, f"{c.row.measured_j:.4g}", f"{c.central_j:.4g}", f"{c.low_j:.4g}", f"{c.high_j:.4g}",
                 f"{c.ratio:.2f}", "yes" if c.inside else "MISS"]
        print(("| " + sep.join(cells) + " |") if markdown else sep.join(cells))
    for r in left_out:
        print(f"left out: {r.label}: {r.excluded or 'engine not fitted'}")
    print(f"LOO: {s['rows']:.0f} rows, {s['inside_pct']:.0f} % inside the band, median |log10 error| "
          f"{s['median_abs_log10_error']:.3f} (targets: >= 80 %, < 0.3)")
    misses = [c.row.label for c in checks if not c.inside]
    print(f"misses ({len(misses)}): {'; '.join(misses) or 'none'}")


if __name__ == "__main__":
    main()
