"""The report's live-traffic section: the requests ``joulescore proxy`` metered, per database.

The per-model summary is ``joulescore requests``'s own (:func:`joulescore.report.requests.summarise`),
over every stored request rather than the last hour, so the page and the terminal agree.  Idle
energy belongs to no model: its share is one figure per database.  The chart of J per request over
time keeps at most :data:`MAX_POINTS` requests per database, taken evenly in time order, and says so.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from joulescore.report.requests import idle_share, summarise
from joulescore.store.requests import RequestRow, RequestStore
from joulescore.units import energy_mark

#: requests per database the chart plots (the summary is always over all of them)
MAX_POINTS = 5_000


def utc_text(unix_s: float) -> str:
    """A time plotly reads as a date (it takes no zone offset): UTC, to the millisecond."""
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def band_pct(energy_j: float, low_j: float, high_j: float) -> tuple[float | None, float | None]:
    """The meter's band on a total, as percent below and above it; None without energy."""
    if energy_j <= 0:
        return None, None
    return (energy_j - low_j) / energy_j * 100.0, (high_j - energy_j) / energy_j * 100.0


def model_rows(rows: list[RequestRow]) -> list[dict[str, Any]]:
    """``joulescore requests``'s summary per model, with the meter's mark and the band of its total."""
    out = []
    for s in summarise(rows):
        mine = [r for r in rows if r.model == s.model]
        low_j, high_j = sum(r.low_j for r in mine), sum(r.high_j for r in mine)
        below, above = band_pct(s.energy_j, low_j, high_j)
        out.append(dataclasses.asdict(s) | {
            "mark": ", ".join(energy_mark(k) for k in s.meter_kinds), "low_j": low_j, "high_j": high_j,
            "band_below_pct": below, "band_above_pct": above})
    return out


def request_series(rows: list[RequestRow], keep: int = MAX_POINTS) -> dict[str, Any]:
    """J per request against its start time (UTC), every request or an even sample in time order."""
    step = max(1, -(-len(rows) // keep))
    shown = rows[::step]
    return {"requests": len(rows), "shown": len(shown), "step": step,
            "time_utc": [utc_text(r.started_unix) for r in shown], "model": [r.model for r in shown],
            "energy_j": [r.energy_j for r in shown], "status": [r.status for r in shown],
            "output_tokens": [r.output_tokens for r in shown]}


def live_traffic(store: RequestStore, origin: str) -> dict[str, Any] | None:
    """The origin's live-traffic section; None (no section) when its proxy stored no request."""
    rows = store.requests_since(0.0)
    if not rows:
        return None
    idle_j, idle_s = store.idle_since(0.0)
    request_j = sum(r.energy_j for r in rows)
    return {"origin": origin, "first_utc": utc_text(rows[0].started_unix), "last_utc": utc_text(rows[-1].started_unix),
            "requests": len(rows), "request_j": request_j, "idle_j": idle_j, "idle_s": idle_s,
            "idle_share": idle_share(request_j, idle_j), "models": model_rows(rows), "series": request_series(rows)}
