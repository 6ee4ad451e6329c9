"""What a run means at the socket, the grid and at scale: the data behind ``joulescore impact``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord

#: why a figure was refused, by pydantic's error type
_RULES = {"finite_number": "must be a finite number", "greater_than": "must be more than {gt:g}",
          "greater_than_equal": "must be at least {ge:g}", "less_than_equal": "must be at most {le:g}"}


class _Figures(BaseModel):
    """User figures: NaN and infinity never get in, each named by its flag when refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @classmethod
    def checked(cls, **values: Any) -> Any:
        """The figures, or a one-line BadInput naming the flag, the rule and the value given."""
        try:
            return cls(**values)
        except ValidationError as exc:
            e = exc.errors()[0]
            name = str(e["loc"][0]) if e["loc"] else ""
            got = e.get("input")
            shown = f"{got:g}" if isinstance(got, float) else repr(got)
            raise BadInput(f"--{name.replace('_', '-')} {cls._why(name, e)}, got {shown}") from None

    @classmethod
    def _why(cls, name: str, error: Any) -> str:
        field = cls.model_fields.get(name)
        low = [m.ge for m in field.metadata if getattr(m, "ge", None) is not None] if field else []
        high = [m.le for m in field.metadata if getattr(m, "le", None) is not None] if field else []
        if low and high and error["type"] != "finite_number":
            return f"must be between {low[0]:g} and {high[0]:g}"
        rule = _RULES.get(error["type"])
        return rule.format(**(error.get("ctx") or {})) if rule else str(error["msg"])


class ImpactFigures(_Figures):
    """What ``impact`` takes beyond the run: facility, grid, price and fleet scale."""

    pue: Optional[float] = Field(None, ge=1.0)
    wue: Optional[float] = Field(None, ge=0.0)
    g_per_kwh: Optional[float] = Field(None, ge=0.0)
    renewable_share: float = Field(0.0, ge=0.0, le=1.0)
    price_per_kwh: Optional[float] = Field(None, ge=0.0)
    queries_per_day: float = Field(1e9, gt=0.0)


class ChipFigures(_Figures):
    """The user's chip and model figures for the floor and projections (``--tdp-w`` ... ``--active-params``)."""

    tdp_w: Optional[float] = Field(None, gt=0.0)
    peak_tflops: Optional[float] = Field(None, gt=0.0)
    mem_bw_gbs: Optional[float] = Field(None, gt=0.0)
    active_params: Optional[float] = Field(None, gt=0.0)


def chip_for_floor(record: RunRecord, tdp_w: float | None, peak: float | None,
                   bw: float | None) -> tuple[Any, str]:
    """The run's chip for the floor, with the user's --tdp-w / --peak-tflops / --mem-bw-gbs over the table's."""
    from joulescore.impact.floor import run_chip
    from joulescore.impact.hardware_specs import ChipSpec

    figures = ChipFigures.checked(tdp_w=tdp_w, peak_tflops=peak, mem_bw_gbs=bw)
    chip, name = run_chip(record)
    if tdp_w is None and peak is None and bw is None:
        return chip, name
    if chip is None:
        chip = ChipSpec(name, None, None, "", None, "user", kind="user")
    return chip.with_overrides(figures.tdp_w, figures.peak_tflops, figures.mem_bw_gbs), name


def impact_data(record: RunRecord, *, region: str, pue: float | None, wue: float | None,
                g_per_kwh: float | None, grid_file: Path | None, renewable_share: float,
                price_per_kwh: float | None, queries_per_day: float, compare: list[str],
                chip: Any = None, chip_name: str | None = None,
                active_params: float | None = None) -> dict[str, Any]:
    """Everything ``joulescore impact`` reports: per query, at scale, by region, and the floor."""
    from joulescore.impact import footprint as fp
    from joulescore.impact.floor import floor_report
    from joulescore.impact.regions import find_region, load_regions

    given = ImpactFigures.checked(pue=pue, wue=wue, g_per_kwh=g_per_kwh, renewable_share=renewable_share,
                              price_per_kwh=price_per_kwh, queries_per_day=queries_per_day)
    active_params = ChipFigures.checked(active_params=active_params).active_params
    regions = load_regions(grid_file)
    home = find_region(region, regions)
    compared = [find_region(r, regions) for r in compare]
    it = fp.it_energy(record)
    a = fp.assumptions(home, pue=given.pue, wue=given.wue, g_per_kwh=given.g_per_kwh,
                       renewable_share=given.renewable_share, price_per_kwh=given.price_per_kwh)
    per_query = fp.footprint(it["j_per_query"], a)
    band = {k: fp.footprint(it[f"{k}_j_per_query"], a).as_dict() for k in ("low", "high")}
    at_scale = fp.scale(it["j_per_query"], given.queries_per_day, a)
    scale_band = {k: fp.scale(it[f"{k}_j_per_query"], given.queries_per_day, a).as_dict() for k in ("low", "high")}
    comparison: list[dict[str, Any]] = []
    for r in compared:
        ra = fp.assumptions(r, pue=given.pue, wue=given.wue, renewable_share=given.renewable_share,
                            price_per_kwh=given.price_per_kwh)
        s = fp.scale(it["j_per_query"], given.queries_per_day, ra)
        comparison.append({"region": r.iso3, "name": r.name, "g_per_kwh": r.g_per_kwh, "year": r.year,
                           "carbon_g_per_query": fp.footprint(it["j_per_query"], ra).carbon_g,
                           "t_co2e_per_year": s.t_co2e_per_year})
    if comparison:
        first = comparison[0]["t_co2e_per_year"]
        for c in comparison:
            c["ratio_to_first"] = c["t_co2e_per_year"] / first if first else None
    covers = it["covers_short"]
    return {
        "run_id": record.run_id,
        "model": record.model.name,
        "task": record.task.name,
        "it_energy": it,
        "assumptions": a.__dict__,
        "per_query": per_query.as_dict(),
        "per_query_band": band,
        "scale": at_scale.as_dict(),
        "scale_band": scale_band,
        "compare_regions": comparison,
        "floor": floor_report(record, chip, hardware_name=chip_name, active_params=active_params),
        "notes": [
            f"IT energy is {it['meter_kind']} and covers {covers} only "
            f"({_stated(it['uncertainty_pct'])}); facility overheads enter only through PUE.",
            "grid figures are annual, location-based, generation-side averages (no imports, time of day or PPAs); "
            "--renewable-share removes that share of the facility energy from the carbon-bearing part.",
            "water is on-site WUE x IT energy (WUE is defined per kWh of IT energy); off-site water used to "
            "generate the electricity is not counted.",
            f"scale assumes {given.queries_per_day:g} queries/day like this run's, every day of a 365-day year.",
        ],
    }


def _stated(uncertainty_pct: float | None) -> str:
    """The meter's stated uncertainty, or that it states none (never "None")."""
    if uncertainty_pct is None:
        return "no uncertainty stated by the meter"
    return f"±{uncertainty_pct:g}% stated by the meter"
