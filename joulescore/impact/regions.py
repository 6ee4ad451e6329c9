"""Grid carbon intensity by region: ISO3, ISO2 or country name, with close-match errors."""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from joulescore.errors import BadInput
from joulescore.reference import as_float, load_table
from joulescore.textfile import read_csv


@dataclass(frozen=True)
class Region:
    iso3: str
    name: str
    g_per_kwh: float
    renewable_share_pct: float | None
    year: str
    source: str


@lru_cache(maxsize=1)
def iso2_to_iso3() -> dict[str, str]:
    """ISO 3166-1 alpha-2 -> alpha-3 for the countries in the grid table (shipped CSV)."""
    text = resources.files(__package__).joinpath("data").joinpath("iso3166.csv").read_text(encoding="utf-8")
    return {r["iso2"].upper(): r["iso3"].upper() for r in csv.DictReader(io.StringIO(text, newline=""))}


def _rows_to_regions(rows: tuple[dict[str, str], ...] | list[dict[str, str]], origin: str) -> dict[str, Region]:
    regions: dict[str, Region] = {}
    for row in rows:
        iso3 = (row.get("iso3") or "").strip().upper()
        g = as_float(row.get("g_per_kwh"))
        if not iso3 or g is None:
            continue
        region = Region(iso3, (row.get("name") or iso3).strip(), g, as_float(row.get("renewable_share_pct")),
                        (row.get("year") or "").strip(), (row.get("source") or origin).strip())
        old = regions.get(iso3)
        # several "world" rows: keep the most recent year
        if old is None or region.year > old.year:
            regions[iso3] = region
    return regions


def load_regions(grid_file: Path | None = None) -> dict[str, Region]:
    """The shipped grid table, with the rows of ``grid_file`` (same columns) replacing or adding."""
    regions = _rows_to_regions(load_table("grid_intensity"), "grid_intensity.csv")
    if grid_file is not None:
        rows = read_csv(grid_file, "grid file")
        if not rows or not {"iso3", "g_per_kwh"} <= set(rows[0]):
            raise BadInput(f"grid file {grid_file} needs at least the columns iso3 and g_per_kwh")
        try:
            regions.update(_rows_to_regions(rows, f"user file {grid_file}"))
        except ValueError as exc:
            raise BadInput(f"grid file {grid_file}: {exc}") from None
    return regions


def find_region(query: str, regions: dict[str, Region]) -> Region:
    """A region by ISO3 code, ISO2 code or name (case-insensitive); else a one-line error."""
    q = query.strip()
    up = q.upper()
    if up in regions:
        return regions[up]
    if up in ("WORLD", "GLOBAL") and "WLD" in regions:
        return regions["WLD"]
    iso3 = iso2_to_iso3().get(up)
    if iso3 and iso3 in regions:
        return regions[iso3]
    by_name = {r.name.lower(): r for r in regions.values()}
    if q.lower() in by_name:
        return by_name[q.lower()]
    candidates = list(regions) + list(iso2_to_iso3()) + [r.name for r in regions.values()]
    close = difflib.get_close_matches(q, candidates, n=5, cutoff=0.6)
    close += [c for c in difflib.get_close_matches(q.lower(), list(by_name), n=5, cutoff=0.6)
              if by_name[c].name not in close]
    shown = []
    for c in close:
        r = regions.get(c) or regions.get(iso2_to_iso3().get(c, "")) or by_name.get(c.lower())
        label = f"{c} ({r.name})" if r and r.name != c else c
        if label not in shown:
            shown.append(label)
    hint = f"; did you mean: {', '.join(shown[:5])}" if shown else ""
    raise BadInput(f"unknown region {query!r}{hint} (use an ISO3/ISO2 code or a country name)")
