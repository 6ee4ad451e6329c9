"""The whole page's data: the leaderboard (``data.py``) with each run's details, groups and live traffic.

Above the modules it gathers, so none of them needs to import another back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joulescore import __version__
from joulescore.report.aies import AiesView
from joulescore.report.board import Rule
from joulescore.report.data import Origin, leaderboard, open_origins
from joulescore.report.details import ImpactContext, run_details
from joulescore.report.groups import reasoning_groups, sweeps
from joulescore.report.traffic import live_traffic
from joulescore.store.common import utc_now


def _unique(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The first of the items sharing a ``key`` (a sweep read again from a copy of its database)."""
    first: dict[Any, dict[str, Any]] = {}
    for item in items:
        first.setdefault(item[key], item)
    return list(first.values())


def _new_traffic(origins: list[Origin], notes: list[str]) -> list[Origin]:
    """The origins whose proxy requests were not all read already (a copy of a database shows its traffic once)."""
    seen: set[str] = set()
    out = []
    for origin in origins:
        ids = {r.request_id for r in origin.store.requests_since(0.0)}
        if ids and ids <= seen:
            notes.append(f"the proxy requests in --db {origin.path} were all read from an earlier --db: shown once")
            continue
        seen |= ids
        out.append(origin)
    return out


def build_report_data(paths: list[Path], task: str | None = None, rule: Rule = "equal-bins",
                      region: str = "WLD") -> dict[str, Any]:
    """Everything the page shows, as plain JSON types."""
    notes: list[str] = []
    origins = open_origins(paths, notes)
    try:
        intf: dict[str, dict[str, Any]] = {}
        aies: dict[str, AiesView] = {}
        runs, refs = leaderboard(origins, task, rule, intf, aies)
        impact = ImpactContext.for_region(region)
        shown = {r["uid"] for r in runs}
        details = {}
        for origin in origins:
            answered = origin.store.answered_figures()
            for record in origin.records:
                uid = origin.uid(record.run_id)
                if uid in shown:
                    details[uid] = run_details(record, answered.get(record.run_id, []), impact, len(shown), intf[uid],
                                               aies[uid])
        stored = sum(len(o.records) for o in origins)
        return {
            "generated_at": utc_now(), "tool_version": __version__, "rule": rule, "task_filter": task,
            "origins": [{"index": o.index, "path": str(o.path), "runs": len(o.records)} for o in origins],
            "notes": notes,
            "tasks": sorted({r["task"] for r in runs} | {r["task"] for r in refs}),
            "runs": runs, "references": refs, "details": details,
            "not_shown": stored - len(runs), "region": impact.summary(),
            "sweeps": _unique([s for o in origins for s in sweeps(o, task)], "sweep_id"),
            "reasoning": [g for o in origins for g in reasoning_groups(o, task)],
            "traffic": [t for o in _new_traffic(origins, notes) if (t := live_traffic(o.store, str(o.path)))],
        }
    finally:
        for origin in origins:
            origin.store.close()
