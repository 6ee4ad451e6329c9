"""``board --scale aies``: stored runs among the published AI Energy Score rows of their task, by class."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from joulescore.cli.app import out
from joulescore.cli.console import id_column, plain, print_json
from joulescore.model.record import RunRecord
from joulescore.report.aies import board_rows
from joulescore.units import fmt


def print_aies_board(records: Iterable[RunRecord], task: str | None, as_json: bool) -> None:
    """Published rows (their stars), measured runs (stars on those bands) and PROJECTED runs (a star range)."""
    rows = board_rows(records, task)
    if as_json:
        print_json(out, rows)
        return
    if not rows:
        out.print(f"no AI Energy Score table for task {task!r}")
        return
    placed = [r for r in rows if r["scale"] is not None]
    table = Table(title="AI Energy Score scale (GPU Wh per 1,000 queries on H100; PROJECTED rows are not measurements)")
    for col in ("scale", "model", "GPU Wh/1k q", "band", "stars", "mark", "run / source"):
        if col in ("model", "run / source"):
            id_column(table, col, [str(r["model" if col == "model" else "run_or_source"]) for r in placed])
        else:
            table.add_column(col, overflow="fold")
    for r in placed:
        band = f"{fmt(r['low_wh'])}-{fmt(r['high_wh'])}" if r["mark"] == "PROJECTED" else ""
        table.add_row(r["scale"], r["model"], fmt(r["wh_per_1000"]), band, r["stars"], r["mark"],
                      r["run_or_source"])
    if placed:
        out.print(table)
    for r in rows:
        if r["scale"] is None:
            out.print(plain(f"{r['run_or_source']} ({r['model']}, {r['task']}): {r['mark']}"), soft_wrap=True)
