"""Runs that belong together: a sweep's variants (the advisor's table) and reasoning modes side by side.

Both reuse the commands' own computations (``advise`` and ``compare-reasoning``), so
the page shows what the terminal prints.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from joulescore.bench.advise import advise
from joulescore.bench.compare_reasoning import compare, mode_row
from joulescore.errors import JoulescoreError
from joulescore.model.reasoning import MODES
from joulescore.model.record import RunRecord
from joulescore.report.data import Origin


def sweeps(origin: Origin, task: str | None) -> list[dict[str, Any]]:
    """Every stored sweep of the origin: the advisor's table and recommendation (no limits set)."""
    out = []
    for s in origin.store.list_sweeps():
        if task is not None and s["task"] != task:
            continue
        entry: dict[str, Any] = {"sweep_id": s["sweep_id"], "name": s["name"], "task": s["task"],
                                 "origin": str(origin.path), "created_at": s["created_at"]}
        try:
            advice = advise(origin.store, s["sweep_id"], None, None)
        except JoulescoreError as exc:  # a sweep none of whose variants ran: shown, with why
            entry["error"] = str(exc)
            out.append(entry)
            continue
        for v in advice["variants"]:
            v["uid"] = origin.uid(v["run_id"]) if v["run_id"] else None
        entry.update(advice)
        out.append(entry)
    return out


def _mode(record: RunRecord) -> str | None:
    plan = record.reasoning_plan()
    return plan.mode if plan is not None else None


def reasoning_groups(origin: Origin, task: str | None) -> list[dict[str, Any]]:
    """Complete runs of one model on the same prompts under two or more reasoning modes, compared.

    The newest run of each mode stands for it, as ``compare-reasoning --runs`` would take them.
    """
    groups: dict[tuple[str, str, str, int], dict[str, RunRecord]] = defaultdict(dict)
    for record in sorted(origin.records, key=lambda r: r.created_at):
        mode = _mode(record)
        if mode is None or record.status != "complete" or (task is not None and record.task.name != task):
            continue
        key = (record.model.name, record.task.name, record.task.dataset, record.task.num_prompts)
        groups[key][mode] = record
    out = []
    for (model, task_name, dataset, prompts), by_mode in groups.items():
        if len(by_mode) < 2:
            continue
        ordered = sorted(by_mode, key=lambda m: MODES.index(m) if m in MODES else len(MODES))
        rows = [mode_row(m, by_mode[m]) for m in ordered]
        for row in rows:
            row["uid"] = origin.uid(row["run_id"])
        out.append({"model": model, "task": task_name, "dataset": dataset, "prompts": prompts,
                    "origin": str(origin.path), **compare(rows)})
    return out
