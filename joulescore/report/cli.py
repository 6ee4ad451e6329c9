"""``joulescore board`` and ``joulescore label``: registered on the main app by one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from joulescore.errors import BadInput
from joulescore.report.board import RULES, BoardRow, build_board, rate, row_from_record, stars_line, stars_text
from joulescore.store.sqlite import Store

out = Console()


def _records(store: Store) -> list[dict[str, Any]]:
    """Every stored run's record, with the store's status (a record is written when a run ends)."""
    return [{**r.record, "status": r.status} for r in store.list_runs() if r.record]


def mark(kind: str, source: str = "") -> str:
    """The measured/estimated mark every printed energy figure carries."""
    if kind == "published":
        return f"published ({source})"
    return {"measured": "MEASURED", "mixed": "MIXED (part estimated)"}.get(kind, "ESTIMATED")


def run_stars(store: Store, record: dict[str, Any], rule: str = "equal-bins") -> str:
    """The stars line of ``joulescore run``: this run rated among its stored peers."""
    if record.get("status") != "complete":
        return f"no stars: the run is {record.get('status')}, only complete runs are rated"
    me = row_from_record(record)
    peers = [row_from_record(r) for r in _records(store)
             if r.get("status") == "complete" and r["run_id"] != record["run_id"]]
    rated = rate([me, *[p for p in peers if p.task == me.task]], rule)  # type: ignore[arg-type]
    return stars_line(next(r for r in rated if r.run_id == me.run_id))


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def board_table(rows: list[BoardRow], with_pareto: bool) -> Table:
    table = Table(title="joulescore board (energy: lower is better; stars only within a peer group)")
    cols = ["task", "model", "Wh/1k queries", "J/token", "quality", "stars", "mark", "hardware class",
            "size", "protocol", "run / source"]
    if with_pareto:
        cols.insert(6, "pareto")
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        quality = f"{r.quality_metric} {_fmt(r.quality)}" if r.quality_metric else "n/a"
        cells = [r.task, r.model, _fmt(r.wh_per_1000), _fmt(r.j_per_token), quality, stars_text(r.stars),
                 mark(r.kind, r.source), r.hardware_class, r.size_class or "-", r.protocol,
                 r.run_id or r.source]
        if with_pareto:
            cells.insert(6, {True: "frontier", False: "", None: "-"}[r.pareto])
        table.add_row(*cells)
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def board(
        task: Annotated[Optional[str], typer.Option(help="only this task")] = None,
        pareto: Annotated[bool, typer.Option("--pareto", help="mark runs on the energy-quality frontier")] = False,
        rating: Annotated[str, typer.Option(help="star rule: equal-bins (AI Energy Score) or quintile")] = "equal-bins",
        references: Annotated[bool, typer.Option(help="show published reference figures")] = True,
        db: Annotated[Optional[Path], typer.Option("--db", help="results database")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the board as JSON")] = False,
    ) -> None:
        """Rank stored runs per task: energy, quality, stars within peer groups."""
        if rating not in RULES:
            raise BadInput(f"unknown rating rule {rating!r}; choose {' or '.join(RULES)}")
        rows = build_board(_records(Store(db)), task, rating, pareto, references)  # type: ignore[arg-type]
        if as_json:
            out.print_json(json.dumps([r.as_dict() | {"mark": mark(r.kind, r.source)} for r in rows]))
            return
        if not any(not r.is_reference for r in rows):
            out.print(f"no complete runs{' for task ' + task if task else ''} yet: try `joulescore run`")
        if rows:
            out.print(board_table(rows, pareto))
            for note in sorted({r.stars_note for r in rows if r.stars is None and not r.is_reference}):
                out.print(f"[dim]{note}[/]", soft_wrap=True)

    @app.command()
    def label(
        run_id: str,
        output: Annotated[Path, typer.Option("-o", "--output", help="label.svg or label.png")] = Path("label.svg"),
        rating: Annotated[str, typer.Option(help="star rule: equal-bins or quintile")] = "equal-bins",
        db: Annotated[Optional[Path], typer.Option("--db", help="results database")] = None,
    ) -> None:
        """Draw the energy label of one stored run (SVG or PNG)."""
        from joulescore.bench.record import build_record
        from joulescore import __version__
        from joulescore.report.label import render_label

        if rating not in RULES:
            raise BadInput(f"unknown rating rule {rating!r}; choose {' or '.join(RULES)}")
        store = Store(db)
        run = store.get_run(run_id)
        record = build_record(run, store.results(run_id), __version__)
        record["status"] = run.status
        path = render_label(record, run_stars(store, record, rating), output)
        out.print(f"label written: {path}")
