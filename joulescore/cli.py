"""The command line.  Every user error is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from joulescore import __version__
from joulescore.bench.config import ENERGY_SCORE_NEW_TOKENS, ENERGY_SCORE_WARMUP, RunConfig
from joulescore.errors import BadInput, JoulescoreError
from joulescore.store.sqlite import Store, default_db_path

app = typer.Typer(
    name="joulescore",
    help="Measure how much energy AI inference really costs, and rate it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

DbOption = Annotated[Optional[Path], typer.Option("--db", help="results database (default: $JOULESCORE_DB or the XDG data dir)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the record as JSON")]


def _store(db: Path | None) -> Store:
    return Store(db)


def _default_out(db: Path | None) -> Path:
    return (db or default_db_path()).expanduser().parent / "runs"


@app.command()
def run(
    model: Annotated[str, typer.Option(help="GGUF path or alias (smollm2-135m, gemma3-270m)")] = "smollm2-135m",
    task: Annotated[str, typer.Option(help="task name (see `joulescore tasks`)")] = "chat",
    dataset: Annotated[Optional[Path], typer.Option(help="your own JSONL prompt set instead of the task's")] = None,
    template: Annotated[Optional[str], typer.Option(help='custom task: the user message, with {field}s from each --dataset row')] = None,
    metric: Annotated[Optional[str], typer.Option(help="custom task: how to score it (default: length)")] = None,
    reference_field: Annotated[Optional[str], typer.Option(help="custom task: the row field holding the answer")] = None,
    limit: Annotated[Optional[int], typer.Option(help="only the first N prompts")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="energy-score (fixed 10 new tokens) or natural (until EOS; the default with --reasoning)")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="new tokens (energy-score) or the cap (natural)")] = None,
    warmup: Annotated[int, typer.Option(help="uncounted warm-up prompts")] = ENERGY_SCORE_WARMUP,
    backend: Annotated[str, typer.Option(help="inference engine (encoder: embedding/classifier models)")] = "llama.cpp",
    meter: Annotated[str, typer.Option(help="energy source: auto picks the best one here")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the engine (default: all allowed)")] = None,
    n_ctx: Annotated[int, typer.Option(help="context window in tokens")] = 4096,
    prompt_cache: Annotated[bool, typer.Option(help="llama.cpp: reuse the KV cache of the prefix shared with the previous prompt (the engine's default); --no-prompt-cache prefills every prompt in full")] = True,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    resume: Annotated[Optional[str], typer.Option(help="finish an interrupted run by its id")] = None,
    db: DbOption = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="where run.json goes (default: beside the database)")] = None,
    as_json: JsonOption = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar on stderr")] = True,
    idle_baseline: Annotated[float, typer.Option("--idle-baseline", help="measure idle power for SECONDS first; report net energy too")] = 0.0,
    repeats: Annotated[int, typer.Option(help="run N times and report the spread of the figures")] = 1,
    reasoning: Annotated[Optional[str], typer.Option(help="off, on, low, medium or high: the model family's own switch, else prompted (docs/reasoning.md)")] = None,
    reasoning_family: Annotated[Optional[str], typer.Option(help="override the detected family: qwen3, deepseek-r1, smollm3, gpt-oss, none")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "--concurrency", help="prompts per batch (openai: requests in flight)")] = 1,
    dtype: Annotated[Optional[str], typer.Option(help="transformers: fp32, bf16 or fp16")] = None,
    quantization: Annotated[Optional[str], typer.Option(help="transformers/onnxruntime: none or int8 (dynamic)")] = None,
    device: Annotated[Optional[str], typer.Option(help="transformers/onnxruntime: cpu or cuda (default: the best here)")] = None,
    endpoint: Annotated[Optional[str], typer.Option(help="openai: the server's base URL")] = None,
    serve: Annotated[Optional[str], typer.Option(help="openai: a command that starts the server; measured, then stopped")] = None,
    request_timeout: Annotated[float, typer.Option(help="openai: seconds without a byte before a request fails")] = 60.0,
) -> None:
    """Rate a model's energy on a standard task (default: SmolLM2-135M, chat, llama.cpp)."""
    from joulescore.bench import session
    from joulescore.report.console import RichProgress, print_summary

    if limit is not None and limit < 1:
        raise BadInput(f"--limit must be at least 1, got {limit}")
    from joulescore.backends.reasoning import DEFAULT_BUDGETS, FAMILIES, MODES

    if reasoning is not None and reasoning not in MODES:
        raise BadInput(f"unknown reasoning mode {reasoning!r}; choose one of: {', '.join(MODES)}")
    if reasoning_family is not None and reasoning_family not in FAMILIES:
        raise BadInput(f"unknown reasoning family {reasoning_family!r}; choose one of: {', '.join(FAMILIES)}")
    if reasoning is not None and protocol == "energy-score":
        raise BadInput("--reasoning needs --protocol natural: a fixed 10 new tokens cannot hold a reasoning trace")
    protocol = protocol or ("natural" if reasoning is not None else "energy-score")
    if batch_size < 1:
        raise BadInput(f"--batch-size must be at least 1, got {batch_size}")
    if protocol not in ("energy-score", "natural"):
        raise BadInput(f"unknown protocol {protocol!r}; choose energy-score or natural")
    if repeats < 1 or (resume and repeats > 1):
        raise BadInput("--repeats must be at least 1, and cannot be combined with --resume")
    store = _store(db)
    bars: list[RichProgress] = []

    def make_progress(total: int, done: int, kind: str) -> RichProgress:
        bars.append(RichProgress(err, total, done, kind))
        return bars[-1]

    target = out_dir or _default_out(db)
    try:
        if resume:
            record, outcome = session.resume(resume, store, target, make_progress if progress else None)
        else:
            if max_new_tokens is None and reasoning is not None:
                new_tokens = DEFAULT_BUDGETS[reasoning]
            elif max_new_tokens is None:
                from joulescore.tasks.spec import load_spec
                new_tokens = ENERGY_SCORE_NEW_TOKENS if protocol == "energy-score" else load_spec(task).natural_max_new_tokens
            else:
                new_tokens = max_new_tokens
            if new_tokens < 1:
                raise BadInput(f"--max-new-tokens must be at least 1, got {new_tokens}")
            config = RunConfig(
                model=model, task=task, dataset=str(dataset) if dataset else None, template=template,
                metric=metric, reference_field=reference_field, backend=backend,
                meter=meter, protocol=protocol, max_new_tokens=new_tokens, limit=limit, warmup=warmup,
                threads=threads, n_ctx=n_ctx, prompt_cache=prompt_cache, seed=seed, idle_baseline_s=idle_baseline,
                reasoning=reasoning, reasoning_family=reasoning_family, batch_size=batch_size,
                dtype=dtype, quantization=quantization, device=device, endpoint=endpoint, serve=serve,
                request_timeout_s=request_timeout,
            )
            records = []
            for _ in range(repeats):
                record, outcome = session.start(config, store, target, make_progress if progress else None)
                records.append(record)
                if outcome.interrupted:
                    break
    finally:
        for bar in bars:
            bar.close()
    from joulescore.report.cli import run_stars

    for rec in records if not resume else [record]:
        rec["stars"] = run_stars(store, rec)
    if resume or repeats == 1:
        if as_json:
            out.print_json(json.dumps(record))
        else:
            print_summary(out, record)
            out.print(f"[bold]stars[/]    {record['stars']}", soft_wrap=True)
    else:
        from joulescore.bench.repeats import repeat_variance
        from joulescore.report.console import variance_table

        variance = repeat_variance([r for r in records if r["status"] == "complete"])
        if as_json:
            out.print_json(json.dumps({"runs": records, "repeat_variance": variance}))
        else:
            print_summary(out, record)
            out.print(f"[bold]stars[/]    {record['stars']}", soft_wrap=True)
            out.print(variance_table(variance))
    failed = record["counts"]["failed"]
    if failed:
        err.print(f"{failed} of {record['counts']['done']} prompts failed; first error: "
                  f"{(record['errors'] or ['?'])[0]}", markup=False, highlight=False, soft_wrap=True)
    if outcome.interrupted:
        err.print(f"interrupted: {record['counts']['done']} of {record['counts']['prompts']} prompts stored; "
                  f"continue with: joulescore run --resume {record['run_id']}", soft_wrap=True)
        raise typer.Exit(130)


def _summary_row(r: Any) -> dict[str, Any]:
    rec = r.record or {}
    spec = r.spec
    return {
        "run_id": r.run_id,
        "status": r.status,
        "model": spec["model"]["name"],
        "task": spec["task"]["name"],
        "prompts": f"{(rec.get('counts') or {}).get('done', '?')}/{r.num_prompts}",
        "wh": rec.get("wh_per_1000_queries", "n/a"),
        "jpt": rec.get("j_per_output_token", "n/a"),
        "kind": spec["meter"]["kind"],
    }


@app.command()
def runs(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List stored runs."""
    from joulescore.report.console import runs_table

    rows = [_summary_row(r) for r in _store(db).list_runs()]
    if as_json:
        out.print_json(json.dumps(rows))
    elif not rows:
        out.print("no stored runs yet: try `joulescore run`")
    else:
        out.print(runs_table(rows))


@app.command()
def show(run_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One stored run in full."""
    from joulescore.bench.record import build_record
    from joulescore.report.console import print_summary

    from joulescore.report.cli import run_stars

    store = _store(db)
    record = build_record(store.get_run(run_id), store.results(run_id), __version__)
    record["stars"] = run_stars(store, record)
    if as_json:
        out.print_json(json.dumps(record))
    else:
        print_summary(out, record)
        out.print(f"[bold]stars[/]    {record['stars']}", soft_wrap=True)


@app.command()
def tasks(as_json: JsonOption = False) -> None:
    """The tasks available, with their prompt sets and metrics."""
    from joulescore.tasks.spec import data_path, load_spec, task_names

    rows = []
    for name in task_names():
        spec = load_spec(name)
        path = data_path(spec.dataset)
        count = sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.exists() else 0
        fits = "generative (llama.cpp)"
        if spec.encoder is not None:
            fits += ", encoder: " + ("embedding model, e.g. minilm-l6" if spec.encoder.mode == "similarity"
                                     else "sequence classifier folder (none ships offline)")
        rows.append({"task": name, "dataset": spec.dataset, "prompts": count, "metric": spec.metric,
                     "models": fits, "description": spec.description})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    cols = ("task", "dataset", "prompts", "metric", "models", "description")
    table = Table(title="tasks")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    out.print(table)
    out.print("custom: joulescore run --dataset FILE.jsonl --template '...{field}...' "
              "[--metric NAME --reference-field F]", soft_wrap=True, markup=False)


@app.command()
def meters(as_json: JsonOption = False) -> None:
    """Every energy source: available here or not, why, what it covers and its resolution."""
    from joulescore.meters import meter_statuses

    statuses = meter_statuses()
    if as_json:
        out.print_json(json.dumps([s.__dict__ | {"covers": list(s.covers)} for s in statuses]))
        return
    table = Table(title="energy sources")
    for col in ("source", "available", "kind", "covers", "resolution", "why"):
        table.add_column(col)
    for s in statuses:
        table.add_row(s.name, "yes" if s.available else "no", s.kind, ", ".join(s.covers), s.resolution, s.reason)
    out.print(table)


from joulescore.meters.cli import register as _register_meters  # noqa: E402

_register_meters(app)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"joulescore {__version__}")


__import__("joulescore.impact.cli", fromlist=["register"]).register(app)  # impact, project
__import__("joulescore.bench.sweep_cli", fromlist=["register"]).register(app)  # sweep, advise
__import__("joulescore.bench.reasoning_cli", fromlist=["register"]).register(app)  # compare-reasoning
__import__("joulescore.report.cli", fromlist=["register"]).register(app)  # board, label


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM stops a run like Ctrl-C: what finished is stored, the run is marked partial."""
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: user errors become one line and exit status 2, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except JoulescoreError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False, soft_wrap=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
