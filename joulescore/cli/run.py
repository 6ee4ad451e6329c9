"""``run``, ``runs``, ``show``, ``tasks`` and ``version``: rate a model and read the stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from joulescore import __version__
from joulescore.cli.app import app, err, out
from joulescore.cli.console import id_column, print_json
from joulescore.cli.options import DbOption, JsonOption, OutOption, ProgressOption, open_store, run_json_dir
from joulescore.cli.settings import extra_param, settings_command
from joulescore.errors import BadInput
from joulescore.model.config import RunConfig, flag_of
from joulescore.model.record import RunRecord


def stars_row(stars: str) -> Text:
    return Text.assemble(("stars", "bold"), f"    {stars}")


def run(settings: dict[str, Any], *, resume: str | None, db: Path | None, target_dir: Path | None,
        as_json: bool, progress: bool, repeats: int) -> None:
    """Rate a model's energy on a standard task (default: SmolLM2-135M, chat, llama.cpp)."""
    from joulescore.bench import session
    from joulescore.cli.render import RichProgress, print_summary
    from joulescore.report.board import run_stars

    if repeats < 1 or (resume and repeats > 1):
        raise BadInput("--repeats must be at least 1, and cannot be combined with --resume")
    if resume and settings:
        raise BadInput(f"--resume repeats the run's stored settings; drop {flag_of(next(iter(settings)))}")
    config = None if resume else RunConfig.model_validate(settings)
    store = open_store(db)
    bars: list[RichProgress] = []

    def make_progress(total: int, done: int, kind: str) -> RichProgress:
        bars.append(RichProgress(err, total, done, kind))
        return bars[-1]

    target = run_json_dir(db, target_dir)
    records: list[RunRecord] = []
    try:
        if config is None:
            record, outcome = session.resume(str(resume), store, target, make_progress if progress else None)
            records.append(record)
        else:
            for _ in range(repeats):
                record, outcome = session.start(config, store, target, make_progress if progress else None)
                records.append(record)
                if outcome.interrupted:
                    break
    finally:
        for bar in bars:
            bar.close()
    stored = store.records()
    for rec in records:
        rec.stars = run_stars(rec, stored)
    if resume or repeats == 1:
        if as_json:
            print_json(out, record.as_json())
        else:
            print_summary(out, record)
            out.print(stars_row(record.stars))
    else:
        from joulescore.bench.repeats import repeat_variance
        from joulescore.cli.render import variance_table

        variance = repeat_variance([r for r in records if r.status == "complete"])
        if as_json:
            print_json(out, {"runs": [r.as_json() for r in records], "repeat_variance": variance})
        else:
            print_summary(out, record)
            out.print(stars_row(record.stars))
            out.print(variance_table(variance))
    failed = record.counts.failed
    if failed:
        err.print(f"{failed} of {record.counts.done} prompts failed; first error: {(record.errors or ['?'])[0]}")
    if outcome.interrupted:
        err.print(f"interrupted: {record.counts.done} of {record.counts.prompts} prompts stored; "
                  f"continue with: joulescore run --resume {record.run_id}")
        raise typer.Exit(130)


app.command("run")(settings_command(run, [
    extra_param("resume", Annotated[Optional[str], typer.Option(help="finish an interrupted run by its id")], None),
    extra_param("db", DbOption, None),
    extra_param("target_dir", OutOption, None),
    extra_param("as_json", JsonOption, False),
    extra_param("progress", ProgressOption, True),
    extra_param("repeats", Annotated[int, typer.Option(help="run N times and report the spread of the figures")], 1),
]))


@app.command()
def runs(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List stored runs."""
    from joulescore.bench.record import summary_row
    from joulescore.cli.render import runs_table

    store = open_store(db)
    counts = store.result_counts()
    rows = [summary_row(r, *counts.get(r.run_id, (0, 0))) for r in store.list_runs()]
    if as_json:
        print_json(out, rows)
    elif not rows:
        out.print("no stored runs yet: try `joulescore run`")
    else:
        out.print(runs_table(rows))


@app.command()
def show(run_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One stored run in full."""
    from joulescore.cli.render import print_summary
    from joulescore.report.board import run_stars

    store = open_store(db)
    record = store.record(run_id)
    record.stars = run_stars(record, store.records())
    if as_json:
        print_json(out, record.as_json())
    else:
        print_summary(out, record)
        out.print(stars_row(record.stars))


@app.command()
def tasks(as_json: JsonOption = False) -> None:
    """The tasks available, with their prompt sets and metrics."""
    from joulescore.tasks.spec import task_catalogue

    rows = task_catalogue()
    if as_json:
        print_json(out, rows)
        return
    cols = ("task", "dataset", "prompts", "metric", "models", "description")
    table = Table(title="tasks")
    for col in cols:
        if col in ("task", "dataset"):
            id_column(table, col, [str(r[col]) for r in rows])
        else:
            table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    out.print(table)
    out.print("custom: joulescore run --dataset FILE.jsonl --template '...{field}...' "
               "[--metric NAME --reference-field F]")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"joulescore {__version__}")
