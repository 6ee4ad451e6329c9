"""Shipped fact tables (CSV, each row with its ``source``), read as plain dict rows.

The tables come from ``data/`` beside this file; ``data/README.md`` lists the
caveats of each.  Values are returned as strings exactly as published; callers
convert what they use, so that an empty cell stays "not published", never zero.
"""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources

TABLES = (
    "accelerators",
    "cpus",
    "ccf_cpu_coefficients",
    "ccf_other_coefficients",
    "power_curve_models",
    "teads_aws_instance_power",
    "platforms",
    "grid_intensity",
    "datacenters",
    "reference_results",
    "mlenergy_v3_best_configs",
    "ai_energy_score",
    "ai_energy_score_bands",
    "ai_energy_score_tasks",
    "projection_reference",
    "model_shapes",
)


@cache
def load_table(name: str) -> tuple[dict[str, str], ...]:
    """All rows of one shipped table, in file order."""
    if name not in TABLES:
        raise KeyError(f"unknown reference table {name!r}; known: {', '.join(TABLES)}")
    text = resources.files(__package__).joinpath("data").joinpath(f"{name}.csv").read_text(encoding="utf-8")
    return tuple(dict(row) for row in csv.DictReader(io.StringIO(text, newline="")))


def as_float(value: str | None) -> float | None:
    """A published number, or None where the cell is empty (never 0)."""
    if value is None or not value.strip():
        return None
    return float(value.replace(",", ""))
