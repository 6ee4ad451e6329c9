"""``run``, ``runs``, ``show``, ``tasks`` and ``version``: rate a model and read the stored runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from joulescore import __version__
from joulescore.cli.app import app, err, out
from joulescore.cli.console import id_column, plain, print_json
from joulescore.cli.options import DbOption, JsonOption, OutOption, ProgressOption, open_store, read_store, run_json_dir
from joulescore.cli.settings import extra_param, settings_command
from joulescore.errors import BadInput
from joulescore.model.config import RunConfig, flag_of
from joulescore.model.record import RunRecord
from joulescore.store.sqlite import Store

if TYPE_CHECKING:
    from joulescore.bench.runner import RunOutcome


def stars_row(stars: str | None) -> Text:
    return Text.assemble(("stars", "bold"), plain(f"    {stars or 'n/a'}"))  # plain: the peer group names stored strings


def aies_row(record: RunRecord) -> Text:
    """The second, labelled view: the run on the published AI Energy Score scale."""
    line = (record.ai_energy_score or {}).get("line") or "n/a"
    return Text.assemble(("AI Energy Score", "bold"), plain(f"  {line}"))


def rate_record(record: RunRecord, stored: list[RunRecord]) -> None:
    """Fill the record's local stars and its AI Energy Score view (both shown, never stored)."""
    from joulescore.report.aies import aies_view
    from joulescore.report.board import run_stars

    record.stars = run_stars(record, stored)
    record.ai_energy_score = aies_view(record).as_dict()


def check_out_dir(path: Path) -> None:
    """Refuse an ``--out`` that cannot be a folder, before anything runs or is stored.

    The default folder, beside the database, is not checked here: the database's own checks come first.
    """
    path = path.expanduser()
    name = f"--out {path}"
    if path.exists() and not path.is_dir():
        raise BadInput(f"{name} is a file; give a folder (each run's run.json goes into a folder of its own)")
    ancestor = next(a for a in (path, *path.parents) if a.exists())
    if not ancestor.is_dir():
        raise BadInput(f"{name} cannot be made: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise BadInput(f"{name} cannot be made: no write permission in {ancestor}")


def run(settings: dict[str, Any], *, resume: str | None, force: bool, db: Path | None, target_dir: Path | None,
        as_json: bool, progress: bool, repeats: int, baseline: str | None = None,
        baseline_threshold: str = "5%") -> None:
    """Rate a model's energy on a standard task (default: SmolLM2-135M, chat, llama.cpp)."""
    from joulescore.bench.stopping import stopping

    if repeats < 1 or (resume and repeats > 1):
        raise BadInput("--repeats must be at least 1, and cannot be combined with --resume")
    if resume and settings:
        raise BadInput(f"--resume repeats the run's stored settings; drop {flag_of(next(iter(settings)))}")
    if force and not resume:
        raise BadInput("--force applies only with --resume RUN_ID")
    config = None if resume else RunConfig.model_validate(settings)
    if config is not None:  # a bad task, dataset or thread count leaves no results database behind
        from joulescore.bench.checks import check_threads, task_prompts

        try:
            check_threads(config)
            task_prompts(config)
        except KeyboardInterrupt:
            err.print("interrupted before the run was stored: nothing stored")
            raise typer.Exit(130) from None
    if target_dir is not None:
        check_out_dir(target_dir)
    target = run_json_dir(db, target_dir)
    import joulescore.cli.compare as compare

    compare.parse_pct(baseline_threshold, "--baseline-threshold")
    base = compare.load_baseline(baseline, db) if baseline else None
    store = open_store(db)
    # One Ctrl-C stops the run; later ones are ignored until the resume command is printed.
    with stopping():
        records, outcome, stopped_unstored = _runs(config, resume, force, store, target, progress, repeats)
        if not records:
            err.print(f"interrupted: nothing changed; continue with: joulescore run --resume {resume}" if resume
                      else "interrupted before the run was stored: nothing stored")
            raise typer.Exit(130)
        if base is None or not as_json:  # with both, one JSON object holds the runs and the comparison
            _report(store, records, as_json, single=bool(resume) or repeats == 1)
        code = None if base is None else compare.baseline_verdict(
            base, store, [r.run_id for r in records], baseline_threshold, as_json, [r.as_json() for r in records])
        for rec in records:
            disturbed_warning(rec)
        record = records[-1]
        if outcome is not None and outcome.interrupted:
            err.print(f"interrupted: {record.counts.done} of {record.counts.prompts} prompts stored; "
                      f"continue with: joulescore run --resume {record.run_id}")
            raise typer.Exit(130)
        if stopped_unstored:
            err.print(f"interrupted: {len(records)} of {repeats} runs done, the next was not stored")
            raise typer.Exit(130)
        if code:
            raise typer.Exit(code)


def warn(message: str) -> None:
    """A warning on stderr, as it arises (``--json`` keeps stdout clean)."""
    err.print(f"warning: {plain(message)}")


def disturbed_warning(record: RunRecord) -> None:
    it = record.interference
    if it is not None and it.disturbed:
        warn(f"run {record.run_id} was DISTURBED: {it.reason}; the board shows it but never rates it")


def _runs(config: RunConfig | None, resume: str | None, force: bool, store: Store, target: Path, progress: bool,
          repeats: int) -> tuple[list[RunRecord], RunOutcome | None, bool]:
    """Start (``repeats`` times) or resume; also whether a Ctrl-C came before a run was stored."""
    from joulescore.bench import session
    from joulescore.cli.render import RichProgress

    bars: list[RichProgress] = []

    def make_progress(total: int, done: int, kind: str) -> RichProgress:
        bars.append(RichProgress(err, total, done, kind))
        return bars[-1]

    records: list[RunRecord] = []
    outcome = None
    try:
        if config is None:
            record, outcome = session.resume(str(resume), store, target, make_progress if progress else None,
                                             force=force, notify=warn)
            records.append(record)
        else:
            for _ in range(repeats):
                record, outcome = session.start(config, store, target, make_progress if progress else None,
                                                notify=warn)
                records.append(record)
                if outcome.interrupted:
                    break
    except KeyboardInterrupt:
        return records, outcome, True
    finally:
        for bar in bars:
            bar.close()
    return records, outcome, False


def _report(store: Store, records: list[RunRecord], as_json: bool, single: bool) -> None:
    """Print the run (or the repeats and their spread), and how to answer failed prompts again."""
    stored = store.records()
    for rec in records:
        rate_record(rec, stored)
    record = records[-1]
    if single:
        print_record(record, as_json)
    else:
        from joulescore.bench.repeats import repeat_variance
        from joulescore.cli.render import variance_table

        variance = repeat_variance([r for r in records if r.status == "complete"])
        if as_json:
            print_json(out, {"runs": [r.as_json() for r in records], "repeat_variance": variance})
        else:
            print_record(record, False)
            out.print(variance_table(variance))
    failed = record.counts.failed
    if failed:
        err.print(f"{failed} of {record.counts.done} prompts failed; first error: {(record.errors or ['?'])[0]}; "
                  f"answer them again with: joulescore run --resume {record.run_id}")


app.command("run")(settings_command(run, [
    extra_param("resume", Annotated[Optional[str], typer.Option(
        help="finish a run by its id, with its stored settings and prompts: the prompts not yet stored, and "
             "those that failed, are answered (each counts once)")], None),
    extra_param("force", Annotated[bool, typer.Option(
        "--force", help="with --resume: take over a run whose process still looks alive (its pid and start "
                        "time match). If that process really is still running the run, both measure at once "
                        "and each one's energy figures include the other's work")], False),
    extra_param("db", DbOption, None),
    extra_param("target_dir", OutOption, None),
    extra_param("as_json", JsonOption, False),
    extra_param("progress", ProgressOption, True),
    extra_param("repeats", Annotated[int, typer.Option(help="run N times and report the spread of the figures")], 1),
    extra_param("baseline", Annotated[Optional[str], typer.Option(
        help="then compare with this run (id or run.json) as `joulescore compare BASELINE NEW` does, and exit "
             "as it does: 1 regression, 3 inconclusive")], None),
    extra_param("baseline_threshold", Annotated[str, typer.Option(
        help="with --baseline: a change within this share is no change")], "5%"),
]))


@app.command()
def runs(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List stored runs."""
    from joulescore.cli.render import runs_table
    from joulescore.store.record import summary_row

    store = read_store(db)
    counts = store.result_counts()
    rows = [summary_row(r, *counts.get(r.run_id, (0, 0))) for r in store.list_runs()]
    if as_json:
        print_json(out, rows)
    elif not rows:
        out.print("no stored runs yet: try `joulescore run`")
    else:
        out.print(runs_table(rows))


def print_record(record: RunRecord, as_json: bool) -> None:
    """One run: its JSON, or its summary with the stars and the AI Energy Score line."""
    from joulescore.cli.render import print_summary

    if as_json:
        print_json(out, record.as_json())
    else:
        print_summary(out, record)
        out.print(stars_row(record.stars))
        out.print(aies_row(record), soft_wrap=True)


@app.command()
def show(run_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One stored run in full."""

    store = read_store(db)
    record = store.record(run_id)
    rate_record(record, store.records())
    print_record(record, as_json)
    disturbed_warning(record)


@app.command()
def tasks(as_json: JsonOption = False) -> None:
    """The tasks available, with their prompt sets and metrics."""
    from joulescore.tasks.prompts import task_catalogue

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
    for r in rows:
        if r.get("needs"):
            out.print(plain(r["needs"]))
    out.print("custom: joulescore run --dataset FILE.jsonl --template '...{field}...' "
               "[--metric NAME --reference-field F]")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"joulescore {__version__}")
