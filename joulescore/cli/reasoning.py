"""``joulescore compare-reasoning``: run each reasoning mode on the same prompts, and print them side by side."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from joulescore.cli.app import app, err, out
from joulescore.cli.console import make_console, print_json
from joulescore.cli.options import DbOption, OutOption, ProgressOption, open_store, read_store, run_json_dir, split_list
from joulescore.model.config import RunConfig
from joulescore.units import fmt as _fmt


def table(result: dict[str, Any]) -> Table:
    """Side by side: ratios are to the baseline mode, "cut" counts responses the budget ended."""
    t = Table(title=f"reasoning modes vs {result['baseline']}: {result['model']} on {result['task']}")
    cols = ("mode", "budget", "J/query", "95% CI", "energy", "tok/q", "tokens", "think/q", "cut", "acc", "change",
            "J/correct", "s/query")
    for c in cols:
        t.add_column(c, justify="left" if c == "mode" else "right", no_wrap=True)
    for r in result["modes"]:
        t.add_row(f"{r['mode']} ({r['method']})", str(r["budget"]), _fmt(r["j_per_query"], ".4g"),
                  "+/-" + _fmt(r.get("interval_half_width_pct"), ".1f", "%"), _fmt(r["energy_ratio"], ".3g", "x"), _fmt(r["output_tokens_per_query"], ".1f"),
                  _fmt(r["tokens_ratio"], ".3g", "x"), _fmt(r["reasoning_tokens_per_query"], ".1f"),
                  f"{r['truncated']}/{r['prompts']}",
                  _fmt(None if r["accuracy"] is None else 100 * r["accuracy"], ".1f", "%"),
                  _fmt(r["accuracy_change_points"], "+.1f", "pt"), _fmt(r["j_per_correct"], ".4g"),
                  _fmt(r["latency_mean_s"], ".3g"))
    return t


@app.command("compare-reasoning")
def compare_reasoning(
    model: Annotated[str, typer.Argument(help="GGUF path or alias")] = "smollm2-135m",
    task: Annotated[str, typer.Option(help="task name")] = "reasoning",
    modes: Annotated[str, typer.Option(help="comma-separated modes: off, on, low, medium, high")] = "off,on",
    budgets: Annotated[Optional[str], typer.Option(help="max new tokens per mode, e.g. off=64,on=256 (defaults: docs/reasoning.md)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="only the first N prompts")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="per mode: shuffled prompts (fixed seed), stopped once the 95% interval of J/query is within this "
             "share of it, e.g. 5% (at least 100 prompts)")] = None,
    reasoning_family: Annotated[Optional[str], typer.Option(help="override the detected family")] = None,
    warmup: Annotated[int, typer.Option(help="uncounted warm-up prompts per mode")] = 2,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the engine")] = None,
    n_ctx: Annotated[int, typer.Option(help="context window in tokens")] = 4096,
    meter: Annotated[str, typer.Option(help="energy source")] = "auto",
    db: DbOption = None,
    target_dir: OutOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    progress: ProgressOption = True,
    runs: Annotated[Optional[str], typer.Option("--runs", help="compare stored runs RUN_ID,RUN_ID instead of running")] = None,
) -> None:
    """Run each reasoning mode on the same prompts and set energy against accuracy."""
    from joulescore.bench import checks, session
    from joulescore.bench.compare_reasoning import compare, mode_row, parse_budgets, parse_modes, stored_rows
    from joulescore.cli.render import RichProgress

    if runs is not None:
        rows, model_name, task_name = stored_rows(split_list(runs), read_store(db))
        _report({"model": model_name, "task": task_name, "limit": None, **compare(rows)}, rows, as_json)
        return
    mode_list = parse_modes(modes)
    budget_by_mode = parse_budgets(budgets, mode_list)
    configs = {mode: RunConfig(model=model, task=task, protocol="natural", max_new_tokens=budget_by_mode[mode],
                               limit=limit, precision=precision, warmup=warmup, threads=threads, n_ctx=n_ctx, meter=meter,
                               reasoning=mode, reasoning_family=reasoning_family) for mode in mode_list}
    for config in configs.values():
        checks.check_inputs(config)  # before the first mode starts and prints: a bad model or task is one line
    store = open_store(db)
    target = run_json_dir(db, target_dir)
    rows = []
    for mode in mode_list:
        config = configs[mode]
        bars: list[RichProgress] = []

        def make_progress(total: int, done: int, kind: str, bars: list[RichProgress] = bars) -> RichProgress:
            bars.append(RichProgress(err, total, done, kind))
            return bars[-1]

        err.print(f"mode {mode}: budget {budget_by_mode[mode]} new tokens")
        try:
            record, outcome = session.start(config, store, target, make_progress if progress else None)
        finally:
            for bar in bars:
                bar.close()
        if outcome.interrupted:
            err.print(f"interrupted in mode {mode}; continue it with: joulescore run --resume "
                      f"{record.run_id}")
            raise typer.Exit(130)
        rows.append(mode_row(mode, record))
    _report({"model": model, "task": task, "limit": limit, "precision_pct": configs[mode_list[0]].precision,
             **compare(rows)}, rows, as_json)


def _report(result: dict[str, Any], rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(out, result)
        return
    wide = make_console()
    if wide.is_terminal:
        wide.width = max(wide.width, 132)  # twelve columns: never squeeze them
    wide.print(table(result))
    out.print(f"verdict: {result['verdict']}")
    sampled = [r for r in rows if r.get("sampled")]
    if sampled:
        out.print("sampled: " + ", ".join(f"{r['mode']} {r['prompts']} of {r['prompts_available']} prompts"
                                          for r in sampled) + f" (--precision {result.get('precision_pct'):g}%)",
                  style="dim")
    kinds = {r["meter_kind"] for r in rows}
    if kinds != {"measured"}:
        out.print(f"energy is {', '.join(sorted(kinds))} (see joulescore show RUN_ID); "
                  "ratios between modes share the meter's bias", style="dim")
