"""``joulescore sweep`` and ``joulescore advise``: registered on the main app by one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

out = Console()
if not out.is_terminal:
    out = Console(width=200)  # piped or redirected: keep the table's columns readable
err = Console(stderr=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def print_advice(advice: dict[str, Any]) -> None:
    table = Table(title=f"sweep {advice['sweep_id']} on task {advice['task']} (baseline {advice['baseline']})")
    for col in ("variant", "status", "J/query", "Wh/1k q", "J/token", "steady J/token", "tok/s", "p90 s",
                "quality", "Pareto", "meets limits"):
        table.add_column(col, justify="left" if col in ("variant", "status") else "right")
    for v in advice["variants"]:
        status = v["status"] if not v["reason"] else f"{v['status']}: {v['reason']}"
        table.add_row(v["variant"], status, _fmt(v["j_per_query"]), _fmt(v["wh_per_1000_queries"]),
                      _fmt(v["j_per_output_token"]), _fmt(v["steady_j_per_output_token"]), _fmt(v["tokens_per_s"], 1),
                      _fmt(v["p90_latency_s"]), _fmt(v["quality"]), "*" if v["pareto"] else "",
                      "yes" if v["meets_limits"] else "no")
    out.print(table)
    kinds = sorted({v["energy_kind"] for v in advice["variants"] if v["energy_kind"]})
    out.print(f"energy is {' / '.join(kinds).upper() or 'n/a'} (see each run's meter for what it covers)")
    for note in advice["notes"]:
        out.print(f"note: {note}")
    rec = advice["recommended"]
    if rec is None:
        out.print("no variant meets the limits")
        return
    delta = "n/a" if rec["quality_delta"] is None else f"{rec['quality_delta']:+.4g}"
    if rec.get("quality_delta_points") is not None:
        delta += f" = {rec['quality_delta_points']:+.2f} points"
    out.print(f"recommended: {rec['variant']} (run {rec['run_id']}): {rec['energy_ratio_vs_baseline']}x less energy "
              f"per query than {advice['baseline']} ({rec['baseline_j_per_query']:.4g} -> {rec['j_per_query']:.4g} J, "
              f"{rec['energy_kind']}), quality delta {delta} ({rec['quality_metric']}), "
              f"p90 latency {rec['p90_latency_s']:.3g} s", soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        plan_file: Annotated[Optional[Path], typer.Argument(help="the sweep plan (YAML, see examples/plan.yaml)")] = None,
        resume: Annotated[Optional[str], typer.Option(help="carry on an interrupted sweep by its id")] = None,
        limit: Annotated[Optional[int], typer.Option(help="override the plan's prompt limit")] = None,
        use_ray: Annotated[bool, typer.Option("--ray", help="dispatch variants as Ray tasks")] = False,
        db: Annotated[Optional[Path], typer.Option("--db", help="results database")] = None,
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="where each run.json goes")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the advice as JSON")] = False,
    ) -> None:
        """Run a grid of variants on one task; each is a stored run linked by a sweep id."""
        from joulescore.bench.advise import advise
        from joulescore.bench.sweep import load_plan, run_sweep
        from joulescore.errors import BadInput
        from joulescore.store.sqlite import Store, default_db_path

        store = Store(db)
        if resume is not None:
            from joulescore.bench.sweep import Plan

            if limit is not None:
                raise BadInput("--limit cannot change a sweep being resumed")
            plan = Plan.model_validate(store.get_sweep(resume)[0])
        elif plan_file is None:
            raise BadInput("give a sweep plan file, or --resume SWEEP_ID")
        else:
            plan = load_plan(plan_file)
        if limit is not None:
            if limit < 1:
                raise BadInput(f"--limit must be at least 1, got {limit}")
            plan = plan.model_copy(update={"limit": limit})
        target = out_dir or (db or default_db_path()).expanduser().parent / "runs"

        def report(name: str, outcome: dict[str, Any]) -> None:
            if "error" in outcome:
                err.print(f"{name}: failed: {outcome['error']}", markup=False, soft_wrap=True)
            else:
                err.print(f"{name}: {outcome['status']}, {outcome['j_per_query']} J/query "
                          f"({outcome['meter']['kind']}), run {outcome['run_id']}", markup=False, soft_wrap=True)

        sweep_id = run_sweep(plan, store, target, use_ray=use_ray, report=report, resume_id=resume)
        advice = advise(store, sweep_id, None, None)
        if as_json:
            out.print_json(json.dumps(advice))
        else:
            print_advice(advice)
            out.print(f"sweep id {sweep_id}: joulescore advise {sweep_id} --max-quality-drop 1 --max-p90-latency 2s")

    @app.command(name="advise")
    def advise_cmd(
        sweep_id: Annotated[str, typer.Argument(help="a sweep id printed by `joulescore sweep`")],
        max_quality_drop: Annotated[Optional[float], typer.Option(help="largest quality loss vs the baseline, in points (metric x 100: 1 = one percentage point)")] = None,
        max_p90_latency: Annotated[Optional[str], typer.Option(help="largest p90 end-to-end latency, e.g. 2s or 500ms")] = None,
        db: Annotated[Optional[Path], typer.Option("--db", help="results database")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the advice as JSON")] = False,
    ) -> None:
        """The energy-quality-latency Pareto set of a sweep and the variant to run."""
        from joulescore.bench.advise import advise, parse_seconds
        from joulescore.store.sqlite import Store

        limit_s = parse_seconds(max_p90_latency) if max_p90_latency is not None else None
        advice = advise(Store(db), sweep_id, max_quality_drop, limit_s)
        if as_json:
            out.print_json(json.dumps(advice))
        else:
            print_advice(advice)
