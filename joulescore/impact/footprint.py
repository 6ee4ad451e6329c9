"""Facility energy, carbon, water and cost of a run, per query and at fleet scale.

Formulas (docs/impact.md):

    facility_J   = IT_J x PUE                           (PUE applied once, here only)
    carbon_g     = facility_kWh x g_per_kWh x (1 - renewable_share)
    water_L      = IT_kWh x WUE                         (WUE is litres per kWh of IT energy)
    cost         = facility_kWh x price_per_kWh
    average_MW   = facility_J_per_query x queries_per_day / 86 400 s / 1e6
    MWh_per_year = average_MW x 8 760 h
    tCO2e/year   = MWh_per_year x 1 000 x g_per_kWh x (1 - renewable_share) / 1e6
    m3_per_year  = IT_kWh_per_year x WUE / 1 000
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from joulescore.errors import BadInput
from joulescore.impact.regions import Region
from joulescore.model.record import RunRecord
from joulescore.reference import as_float, load_table

J_PER_KWH = 3.6e6
SECONDS_PER_DAY = 86_400.0
HOURS_PER_YEAR = 8_760.0


def j_to_kwh(joules: float) -> float:
    return joules / J_PER_KWH


def _datacenter_row(operator: str, year: str, column: str) -> tuple[float, str]:
    for row in load_table("datacenters"):
        if row["operator"] == operator and row["year"] == year:
            value = as_float(row[column])
            if value is not None:
                return value, f"{row['operator']}, {row['scope']} {row['year']}".strip()
    raise KeyError((operator, year, column))  # pragma: no cover - shipped data


def default_pue() -> tuple[float, str]:
    """Industry average PUE (Uptime Institute survey, 2024)."""
    return _datacenter_row("Industry average (Uptime Institute survey)", "2024", "pue")


def default_wue() -> tuple[float, str]:
    """Commonly cited industry average on-site WUE (L per kWh of IT energy)."""
    return _datacenter_row("Industry average (academic estimates)", "", "wue_l_per_kwh")


@dataclass(frozen=True)
class Assumptions:
    """Every figure the footprint uses, with where it came from."""

    region: str
    region_name: str
    g_per_kwh: float
    grid_source: str
    grid_year: str
    pue: float
    pue_source: str
    wue_l_per_kwh: float
    wue_source: str
    renewable_share: float = 0.0
    price_per_kwh: float | None = None

    def __post_init__(self) -> None:
        figures = (("PUE", self.pue), ("WUE", self.wue_l_per_kwh), ("grid intensity", self.g_per_kwh),
                   ("--renewable-share", self.renewable_share), ("--price-per-kwh", self.price_per_kwh))
        for name, value in figures:
            if value is not None and not math.isfinite(value):
                raise BadInput(f"{name} must be a finite number, got {value:g}")
        if self.pue < 1.0:
            raise BadInput(f"PUE must be at least 1.0, got {self.pue:g}")
        if not 0.0 <= self.renewable_share <= 1.0:
            raise BadInput(f"--renewable-share must be between 0 and 1, got {self.renewable_share:g}")
        if self.g_per_kwh < 0 or self.wue_l_per_kwh < 0:
            raise BadInput("grid intensity and WUE cannot be negative")
        if self.price_per_kwh is not None and self.price_per_kwh < 0:
            raise BadInput(f"--price-per-kwh cannot be negative, got {self.price_per_kwh:g}")


def assumptions(region: Region, *, pue: float | None = None, wue: float | None = None,
                g_per_kwh: float | None = None, renewable_share: float = 0.0,
                price_per_kwh: float | None = None) -> Assumptions:
    """Defaults from the shipped tables, each replaced by the user's figure where given."""
    if pue is None:
        pue, pue_src = default_pue()
    else:
        pue_src = "user (--pue)"
    if wue is None:
        wue, wue_src = default_wue()
    else:
        wue_src = "user (--wue)"
    if g_per_kwh is None:
        g, g_src = region.g_per_kwh, region.source
    else:
        g, g_src = g_per_kwh, "user (--g-per-kwh)"
    return Assumptions(region.iso3, region.name, g, g_src, region.year if g_per_kwh is None else "",
                       pue, pue_src, wue, wue_src, renewable_share, price_per_kwh)


@dataclass(frozen=True)
class Footprint:
    """Footprint of a given IT energy under a set of assumptions."""

    it_j: float
    facility_j: float
    facility_kwh: float
    carbon_g: float
    water_l: float
    cost: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def footprint(it_j: float, a: Assumptions) -> Footprint:
    facility_j = it_j * a.pue
    facility_kwh = j_to_kwh(facility_j)
    return Footprint(
        it_j=it_j,
        facility_j=facility_j,
        facility_kwh=facility_kwh,
        carbon_g=facility_kwh * a.g_per_kwh * (1.0 - a.renewable_share),
        water_l=j_to_kwh(it_j) * a.wue_l_per_kwh,
        cost=facility_kwh * a.price_per_kwh if a.price_per_kwh is not None else None,
    )


@dataclass(frozen=True)
class Scale:
    """A fleet serving ``queries_per_day`` of this workload, all year round."""

    queries_per_day: float
    average_mw: float
    mwh_per_year: float
    t_co2e_per_year: float
    water_m3_per_year: float
    cost_per_year: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scale(it_j_per_query: float, queries_per_day: float, a: Assumptions) -> Scale:
    if not (math.isfinite(queries_per_day) and queries_per_day > 0):
        raise BadInput(f"--queries-per-day must be positive, got {queries_per_day:g}")
    day = footprint(it_j_per_query * queries_per_day, a)
    average_mw = day.facility_j / SECONDS_PER_DAY / 1e6
    mwh_per_year = average_mw * HOURS_PER_YEAR
    days_per_year = HOURS_PER_YEAR / 24
    return Scale(
        queries_per_day=queries_per_day,
        average_mw=average_mw,
        mwh_per_year=mwh_per_year,
        t_co2e_per_year=day.carbon_g * days_per_year / 1e6,
        water_m3_per_year=day.water_l * days_per_year / 1e3,
        cost_per_year=day.cost * days_per_year if day.cost is not None else None,
    )


def it_energy(record: RunRecord) -> dict[str, Any]:
    """The run's IT energy per query (central, low, high) and what the meter covered."""
    queries = record.counts.succeeded
    total = record.energy.total_j
    if not queries or not total:
        raise BadInput(f"run {record.run_id} has no answered queries with energy; nothing to assess")
    meter = record.meter
    return {
        "j_per_query": total / queries,
        "low_j_per_query": record.energy.low_j / queries,
        "high_j_per_query": record.energy.high_j / queries,
        "queries": queries,
        "meter_kind": meter.kind,
        "covers": list(meter.includes),
        "covers_short": "+".join(str(c).split(":")[0].strip().upper() for c in meter.includes) or "unstated",
        "uncertainty_pct": meter.uncertainty_pct,
    }
