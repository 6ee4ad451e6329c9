"""What a run means at the socket, the grid and at scale: the data behind ``joulescore impact``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord


def chip_for_floor(record: RunRecord, tdp_w: float | None, peak: float | None,
                   bw: float | None) -> tuple[Any, str]:
    """The run's chip for the floor, with the user's --tdp-w / --peak-tflops / --mem-bw-gbs over the table's."""
    from joulescore.impact.floor import run_chip
    from joulescore.impact.hardware_specs import ChipSpec

    chip, name = run_chip(record)
    if tdp_w is None and peak is None and bw is None:
        return chip, name
    for flag, v in (("--tdp-w", tdp_w), ("--peak-tflops", peak), ("--mem-bw-gbs", bw)):
        if v is not None and v <= 0:
            raise BadInput(f"{flag} must be positive, got {v:g}")
    if chip is None:
        chip = ChipSpec(name, None, None, "", None, "user", kind="user")
    return chip.with_overrides(tdp_w, peak, bw), name


def impact_data(record: RunRecord, *, region: str, pue: float | None, wue: float | None,
                g_per_kwh: float | None, grid_file: Path | None, renewable_share: float,
                price_per_kwh: float | None, queries_per_day: float, compare: list[str],
                chip: Any = None, chip_name: str | None = None) -> dict[str, Any]:
    """Everything ``joulescore impact`` reports: per query, at scale, by region, and the floor."""
    from joulescore.impact import footprint as fp
    from joulescore.impact.floor import floor_report
    from joulescore.impact.regions import find_region, load_regions

    regions = load_regions(grid_file)
    home = find_region(region, regions)
    compared = [find_region(r, regions) for r in compare]
    it = fp.it_energy(record)
    a = fp.assumptions(home, pue=pue, wue=wue, g_per_kwh=g_per_kwh, renewable_share=renewable_share,
                       price_per_kwh=price_per_kwh)
    per_query = fp.footprint(it["j_per_query"], a)
    band = {k: fp.footprint(it[f"{k}_j_per_query"], a).as_dict() for k in ("low", "high")}
    at_scale = fp.scale(it["j_per_query"], queries_per_day, a)
    scale_band = {k: fp.scale(it[f"{k}_j_per_query"], queries_per_day, a).as_dict() for k in ("low", "high")}
    comparison = []
    for r in compared:
        ra = fp.assumptions(r, pue=pue, wue=wue, renewable_share=renewable_share, price_per_kwh=price_per_kwh)
        s = fp.scale(it["j_per_query"], queries_per_day, ra)
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
        "floor": floor_report(record, chip, hardware_name=chip_name),
        "notes": [
            f"IT energy is {it['meter_kind']} and covers {covers} only "
            f"(±{it['uncertainty_pct']}% stated by the meter); facility overheads enter only through PUE.",
            "grid figures are annual, location-based, generation-side averages (no imports, time of day or PPAs); "
            "--renewable-share removes that share of the facility energy from the carbon-bearing part.",
            "water is on-site WUE x IT energy (WUE is defined per kWh of IT energy); off-site water used to "
            "generate the electricity is not counted.",
            f"scale assumes {queries_per_day:g} queries/day like this run's, every day of a 365-day year.",
        ],
    }
