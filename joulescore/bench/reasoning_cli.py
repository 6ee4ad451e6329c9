"""``joulescore compare-reasoning``: what reasoning costs, mode against mode, on the same prompts.

Each mode is an ordinary stored run (natural protocol, the mode's own token
budget), so any of them can be shown or resumed alone; this command only lines
their records up against the baseline (``off`` when it is among the modes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from joulescore.backends.reasoning import DEFAULT_BUDGETS, FAMILIES, MODES
from joulescore.errors import BadInput

out = Console()
err = Console(stderr=True)


def parse_modes(text: str) -> list[str]:
    """``off,on`` -> ["off", "on"]; unknown or repeated modes are a one-line error."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes:
        raise BadInput(f"--modes lists no mode; choose from: {', '.join(MODES)}")
    if bad:
        raise BadInput(f"unknown reasoning mode {', '.join(map(repr, bad))}; choose from: {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise BadInput(f"--modes lists a mode twice: {text}")
    return modes


def parse_budgets(text: str | None, modes: list[str]) -> dict[str, int]:
    """``off=64,on=256`` over the defaults; every budget at least one token."""
    budgets = {m: DEFAULT_BUDGETS[m] for m in modes}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        mode, sep, value = part.partition("=")
        mode = mode.strip()
        if not sep or mode not in modes:
            raise BadInput(f"--budgets takes MODE=TOKENS for the modes compared ({', '.join(modes)}), got {part!r}")
        try:
            budgets[mode] = int(value)
        except ValueError:
            raise BadInput(f"--budgets: {value!r} is not a whole number of tokens") from None
        if budgets[mode] < 1:
            raise BadInput(f"--budgets: {mode} needs at least 1 token, got {budgets[mode]}")
    return budgets


def _accuracy(record: dict[str, Any]) -> float | None:
    q = record["quality"]
    return q["value"] if q.get("higher_is_better") and q["value"] is not None else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def mode_row(mode: str, record: dict[str, Any]) -> dict[str, Any]:
    """One mode's figures from its run record."""
    counts, energy = record["counts"], record["energy"]
    done = counts["succeeded"]
    acc = _accuracy(record)
    correct = round(acc * record["quality"]["n"]) if acc is not None else None
    return {
        "mode": mode,
        "run_id": record["run_id"],
        "status": record["status"],
        "method": record["config"]["reasoning"]["method"],
        "family": record["config"]["reasoning"]["family"],
        "budget": record["config"]["max_new_tokens"],
        "prompts": done,
        "total_j": energy["total_j"],
        "j_per_query": record["j_per_query"],
        "reasoning_j": energy["reasoning_j"],
        "answer_j": energy["answer_j"],
        "output_tokens_per_query": counts["output_tokens"] / done if done else None,
        "reasoning_tokens_per_query": counts["reasoning_tokens"] / done if done else None,
        "truncated": counts["truncated"],
        "reasoning_truncated": counts["reasoning_truncated"],
        "accuracy": acc,
        "correct": correct,
        "j_per_correct": energy["total_j"] / correct if correct else None,
        "latency_mean_s": record["latency"]["mean_s"],
        "meter_kind": record["meter"]["kind"],
    }


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios and differences against the baseline row, and the one-line verdict."""
    base = next((r for r in rows if r["mode"] == "off"), rows[0])
    verdicts = []
    for r in rows:
        r["energy_ratio"] = _ratio(r["j_per_query"], base["j_per_query"])
        r["tokens_ratio"] = _ratio(r["output_tokens_per_query"], base["output_tokens_per_query"])
        r["latency_ratio"] = _ratio(r["latency_mean_s"], base["latency_mean_s"])
        both = r["accuracy"] is not None and base["accuracy"] is not None
        r["accuracy_change_points"] = 100 * (r["accuracy"] - base["accuracy"]) if both else None
        if r is base or r["energy_ratio"] is None:
            continue
        gain = (f"{r['accuracy_change_points']:+.1f} points of accuracy" if both
                else "no accuracy score on this task")
        verdicts.append(f"{r['mode']}: {r['energy_ratio']:.3g}x the energy for {gain}")
    verdict = "; ".join(verdicts) + f" (vs {base['mode']})" if verdicts else "one mode only: nothing to compare"
    return {"baseline": base["mode"], "modes": rows, "verdict": verdict}


def stored_rows(run_ids: list[str], db: Path | None) -> tuple[list[dict[str, Any]], str, str]:
    """Rows for runs already stored (e.g. finished with ``run --resume``): model, task and mode from each."""
    from joulescore import __version__
    from joulescore.bench.record import build_record
    from joulescore.store.sqlite import Store

    store = Store(db)
    rows, names = [], set()
    for run_id in run_ids:
        record = build_record(store.get_run(run_id), store.results(run_id), __version__)
        reasoning = record["config"].get("reasoning")
        if not isinstance(reasoning, dict):
            raise BadInput(f"run {run_id} was not run with --reasoning: nothing to compare")
        names.add((record["model"]["name"], record["task"]["name"]))
        rows.append(mode_row(reasoning["mode"], record))
    if len(names) != 1:
        raise BadInput(f"--runs mixes models or tasks: {sorted(names)}")
    model, task = names.pop()
    return rows, model, task


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def table(result: dict[str, Any]) -> Table:
    """Side by side: ratios are to the baseline mode, "cut" counts responses the budget ended."""
    t = Table(title=f"reasoning modes vs {result['baseline']}: {result['model']} on {result['task']}")
    cols = ("mode", "budget", "J/query", "energy", "tok/q", "tokens", "think/q", "cut", "acc", "change",
            "J/correct", "s/query")
    for c in cols:
        t.add_column(c, justify="left" if c == "mode" else "right", no_wrap=True)
    for r in result["modes"]:
        t.add_row(f"{r['mode']} ({r['method']})", str(r["budget"]), _fmt(r["j_per_query"], ".4g"),
                  _fmt(r["energy_ratio"], ".3g", "x"), _fmt(r["output_tokens_per_query"], ".1f"),
                  _fmt(r["tokens_ratio"], ".3g", "x"), _fmt(r["reasoning_tokens_per_query"], ".1f"),
                  f"{r['truncated']}/{r['prompts']}",
                  _fmt(None if r["accuracy"] is None else 100 * r["accuracy"], ".1f", "%"),
                  _fmt(r["accuracy_change_points"], "+.1f", "pt"), _fmt(r["j_per_correct"], ".4g"),
                  _fmt(r["latency_mean_s"], ".3g"))
    return t


def register(app: typer.Typer) -> None:
    """Add ``compare-reasoning`` to the CLI."""

    @app.command("compare-reasoning")
    def compare_reasoning(
        model: Annotated[str, typer.Argument(help="GGUF path or alias")] = "smollm2-135m",
        task: Annotated[str, typer.Option(help="task name")] = "reasoning",
        modes: Annotated[str, typer.Option(help="comma-separated modes: off, on, low, medium, high")] = "off,on",
        budgets: Annotated[Optional[str], typer.Option(help="max new tokens per mode, e.g. off=64,on=256 (defaults: docs/reasoning.md)")] = None,
        limit: Annotated[Optional[int], typer.Option(help="only the first N prompts")] = None,
        reasoning_family: Annotated[Optional[str], typer.Option(help="override the detected family")] = None,
        warmup: Annotated[int, typer.Option(help="uncounted warm-up prompts per mode")] = 2,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads for the engine")] = None,
        n_ctx: Annotated[int, typer.Option(help="context window in tokens")] = 4096,
        meter: Annotated[str, typer.Option(help="energy source")] = "auto",
        db: Annotated[Optional[Path], typer.Option("--db", help="results database")] = None,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="where each run.json goes")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
        progress: Annotated[bool, typer.Option(help="show a progress bar on stderr")] = True,
        runs: Annotated[Optional[str], typer.Option("--runs", help="compare stored runs RUN_ID,RUN_ID instead of running")] = None,
    ) -> None:
        """Run each reasoning mode on the same prompts and set energy against accuracy."""
        from joulescore.bench import session
        from joulescore.bench.config import RunConfig
        from joulescore.report.console import RichProgress
        from joulescore.store.sqlite import Store, default_db_path

        if runs is not None:
            rows, model_name, task_name = stored_rows([r.strip() for r in runs.split(",") if r.strip()], db)
            _report({"model": model_name, "task": task_name, "limit": None, **compare(rows)}, rows, as_json)
            return
        mode_list = parse_modes(modes)
        budget_by_mode = parse_budgets(budgets, mode_list)
        if limit is not None and limit < 1:
            raise BadInput(f"--limit must be at least 1, got {limit}")
        if reasoning_family is not None and reasoning_family not in FAMILIES:
            raise BadInput(f"unknown reasoning family {reasoning_family!r}; choose one of: {', '.join(FAMILIES)}")
        store = Store(db)
        target = out_dir or (db or default_db_path()).expanduser().parent / "runs"
        rows = []
        for mode in mode_list:
            config = RunConfig(model=model, task=task, protocol="natural", max_new_tokens=budget_by_mode[mode],
                               limit=limit, warmup=warmup, threads=threads, n_ctx=n_ctx, meter=meter,
                               reasoning=mode, reasoning_family=reasoning_family)
            bars: list[RichProgress] = []

            def make_progress(total: int, done: int, kind: str) -> RichProgress:
                bars.append(RichProgress(err, total, done, kind))
                return bars[-1]

            err.print(f"mode {mode}: budget {budget_by_mode[mode]} new tokens", highlight=False)
            try:
                record, outcome = session.start(config, store, target, make_progress if progress else None)
            finally:
                for bar in bars:
                    bar.close()
            if outcome.interrupted:
                err.print(f"interrupted in mode {mode}; continue it with: joulescore run --resume "
                          f"{record['run_id']}", soft_wrap=True)
                raise typer.Exit(130)
            rows.append(mode_row(mode, record))
        _report({"model": model, "task": task, "limit": limit, **compare(rows)}, rows, as_json)


def _report(result: dict[str, Any], rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result))
        return
    Console(width=max(out.width, 132)).print(table(result))  # twelve columns: never squeeze them
    out.print(f"verdict: {result['verdict']}", highlight=False, soft_wrap=True)
    kinds = {r["meter_kind"] for r in rows}
    if kinds != {"measured"}:
        out.print(f"[dim]energy is {', '.join(sorted(kinds))} (see joulescore show RUN_ID); "
                  "ratios between modes share the meter's bias[/]")
