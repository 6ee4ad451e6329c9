"""``board`` and ``label``: stored runs ranked with stars, and one run's energy label."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, cast

import typer
from rich.table import Table

from joulescore.cli.app import app, out
from joulescore.cli.console import id_column, print_json
from joulescore.cli.options import DbOption, ForceOption, JsonOption, read_store
from joulescore.errors import BadInput
from joulescore.report.board import (
    DEFAULT_PRECISION_PCT,
    RULES,
    BoardRow,
    Rule,
    build_board,
    run_stars,
    stars_text,
)
from joulescore.units import energy_mark, fmt


def board_table(rows: list[BoardRow], with_pareto: bool) -> Table:
    table = Table(title="joulescore board (energy: lower is better; stars only within a peer group)")
    cols = ["task", "model", "Wh/1k queries", "95% CI", "J/token", "quality", "stars", "mark", "hardware class",
            "size", "protocol", "run / source"]
    if with_pareto:
        cols.insert(7, "pareto")
    ids = {"task": [r.task for r in rows], "model": [r.model for r in rows],
           "run / source": [r.run_id or r.source for r in rows]}
    for c in cols:
        if c in ids:
            id_column(table, c, ids[c])
        else:
            table.add_column(c, overflow="fold")
    for r in rows:
        quality = f"{r.quality_metric} {fmt(r.quality)}" if r.quality_metric else "n/a"
        ci = "-" if r.wh_per_1000_low is None else f"{fmt(r.wh_per_1000_low)}-{fmt(r.wh_per_1000_high)}"
        if r.sampled:
            ci += " (sampled)"
        stars = "DISTURBED" if r.disturbed else stars_text(r.stars)
        cells = [r.task, r.model, fmt(r.wh_per_1000), ci, fmt(r.j_per_token), quality, stars,
                 energy_mark(r.kind, r.source), r.hardware_class, r.size_class or "-", r.protocol,
                 r.run_id or r.source]
        if with_pareto:
            cells.insert(7, {True: "frontier", False: "", None: "-"}[r.pareto])
        table.add_row(*cells)
    return table


def _rule(rating: str) -> Rule:
    if rating not in RULES:
        raise BadInput(f"unknown rating rule {rating!r}; choose {' or '.join(RULES)}")
    return cast(Rule, rating)


def parse_precision(text: str) -> float:
    """``2%`` -> 2.0: the interval a sampled run must be within to be rated."""
    from pydantic import ValidationError

    from joulescore.model.config import RunConfig

    try:
        value = RunConfig.model_validate({"precision": text}).precision
    except ValidationError:
        raise BadInput(f"--precision must be a percentage between 0 and 100, such as 2%, got {text!r}") from None
    assert value is not None
    return value


PrecisionOption = Annotated[str, typer.Option(
    help="sampled (--precision) runs are rated only when their 95% interval is within this share of J/query")]


@app.command()
def board(
    task: Annotated[Optional[str], typer.Option(help="only this task")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="mark runs on the energy-quality frontier")] = False,
    rating: Annotated[str, typer.Option(help="star rule: equal-bins (AI Energy Score) or quintile")] = "equal-bins",
    references: Annotated[bool, typer.Option(help="show published reference figures")] = True,
    scale: Annotated[str, typer.Option(help="local (stars among stored peers) or aies (the runs among the "
                                            "published AI Energy Score rows of their task)")] = "local",
    precision: PrecisionOption = f"{DEFAULT_PRECISION_PCT:g}%",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rank stored runs per task: energy, quality, stars within peer groups (disturbed runs shown, never rated)."""
    rule, limit_pct = _rule(rating), parse_precision(precision)  # the arguments first, then the database
    if scale not in ("local", "aies"):
        raise BadInput(f"unknown scale {scale!r}; choose local or aies")
    if scale == "aies":
        from joulescore.cli.aies import print_aies_board

        print_aies_board(read_store(db).records(), task, as_json)
        return
    rows = build_board(read_store(db).records(), task, rule, pareto, references, limit_pct)
    if as_json:
        print_json(out, [r.as_dict() | {"mark": energy_mark(r.kind, r.source)} for r in rows])
        return
    if not any(not r.is_reference for r in rows):
        out.print(f"no complete runs{' for task ' + task if task else ''} yet: try `joulescore run`")
    if rows:
        out.print(board_table(rows, pareto))
        for note in sorted({r.stars_note for r in rows if r.stars is None and not r.is_reference}):
            out.print(note, style="dim")


@app.command()
def label(
    run_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="label.svg or label.png")] = Path("label.svg"),
    rating: Annotated[str, typer.Option(help="star rule: equal-bins or quintile")] = "equal-bins",
    precision: PrecisionOption = f"{DEFAULT_PRECISION_PCT:g}%",
    db: DbOption = None,
    force: ForceOption = False,
) -> None:
    """Draw the energy label of one stored run (SVG or PNG)."""
    from joulescore.outputs import check_output, database_files, marked
    from joulescore.report.label import LABEL_MARK, render_label

    rule, limit_pct = _rule(rating), parse_precision(precision)
    store = read_store(db)
    check_output(output, what="joulescore label", is_own=marked(LABEL_MARK), force=force,
                 reads=database_files(store.path))
    record = store.record(run_id)
    from joulescore.report.aies import aies_view

    path = render_label(record, run_stars(record, store.records(), rule, limit_pct), output,
                        aies_view(record).line)
    out.print(f"label written: {path}")
