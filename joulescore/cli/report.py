"""``joulescore report``: one self-contained HTML page over one or more results databases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from joulescore.cli.app import app, out
from joulescore.cli.board import _rule
from joulescore.cli.options import ForceOption
from joulescore.outputs import check_output, database_files, marked
from joulescore.store.common import default_db_path


@app.command()
def report(
    output: Annotated[Path, typer.Option("-o", "--output", help="the HTML file to write")] = Path("report.html"),
    db: Annotated[Optional[list[Path]], typer.Option(
        "--db", help="results database; repeat to merge several (default: $JOULESCORE_DB or the XDG data dir)")] = None,
    task: Annotated[Optional[str], typer.Option(help="only this task")] = None,
    rating: Annotated[str, typer.Option(help="star rule: equal-bins (AI Energy Score) or quintile")] = "equal-bins",
    region: Annotated[str, typer.Option(help="grid region of the impact summaries: ISO3, ISO2 or name (WLD = world)")] = "WLD",
    force: ForceOption = False,
) -> None:
    """Write an offline HTML report: leaderboard per task, energy-quality scatter, a page per run, sweeps."""
    from joulescore.report.html import REPORT_MARK, write_report
    from joulescore.report.page import build_report_data

    dbs = db or [default_db_path()]
    check_output(output, what="joulescore report", is_own=marked(REPORT_MARK), force=force,
                 reads=[f for d in dbs for f in database_files(d)])
    data = build_report_data(dbs, task, _rule(rating), region)
    path = write_report(data, output)
    for note in data["notes"]:
        out.print(f"note: {note}")
    out.print(f"report written: {path} ({len(data['runs'])} runs, {len(data['tasks'])} tasks, "
              f"{len(data['sweeps'])} sweeps, {path.stat().st_size / 1e6:.1f} MB)")
