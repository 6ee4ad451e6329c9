"""``sweep``, ``sweeps`` and ``advise``: a grid of variants, the stored sweeps, and which variant to run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from joulescore.cli.app import app, err, out
from joulescore.cli.console import id_column, print_json
from joulescore.cli.options import DbOption, JsonOption, OutOption, open_store, read_store, run_json_dir
from joulescore.errors import BadInput
from joulescore.model.config import MAX_SWEEP_VARIANTS
from joulescore.model.record import RunRecord
from joulescore.units import fmt
from joulescore.units import fmt_cell as _fmt


def print_advice(advice: dict[str, Any]) -> None:
    table = Table(title=f"sweep {advice['sweep_id']} on task {advice['task']} (baseline {advice['baseline']})")
    id_column(table, "variant", [v["variant"] for v in advice["variants"]])
    for col in ("status", "J/query", "Wh/1k q", "J/token", "steady J/token", "tok/s", "p90 s",
                "quality", "Pareto", "meets limits"):
        table.add_column(col, justify="left" if col == "status" else "right")
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
    out.print(f"recommended: {rec['variant']} (run {rec['run_id']}): {fmt(rec['energy_ratio_vs_baseline'], 'g', 'x')} "
              f"less energy per query than {advice['baseline']} ({fmt(rec['baseline_j_per_query'])} -> "
              f"{fmt(rec['j_per_query'])} J, {rec['energy_kind'] or 'n/a'}), quality delta {delta} "
              f"({rec['quality_metric'] or 'n/a'}), p90 latency {fmt(rec['p90_latency_s'], '.3g', ' s')}")


@app.command()
def sweep(
    plan_file: Annotated[Optional[Path], typer.Argument(help="the sweep plan (YAML, see examples/plan.yaml)")] = None,
    resume: Annotated[Optional[str], typer.Option(help="carry on an interrupted sweep by its id")] = None,
    limit: Annotated[Optional[int], typer.Option(help="override the plan's prompt limit")] = None,
    use_ray: Annotated[bool, typer.Option("--ray", help="dispatch variants as Ray tasks")] = False,
    max_variants: Annotated[int, typer.Option(
        min=1, help="refuse a plan whose grid (models x engines x batch sizes) has more variants")] = MAX_SWEEP_VARIANTS,
    db: DbOption = None,
    target_dir: OutOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the advice as JSON")] = False,
) -> None:
    """Run a grid of variants on one task; each is a stored run linked by a sweep id."""
    from joulescore.bench.advise import advise
    from joulescore.bench.sweep import Plan, load_plan, run_sweep

    store = open_store(db)
    if resume is not None:
        if limit is not None:
            raise BadInput("--limit cannot change a sweep being resumed")
        plan = Plan.model_validate(store.get_sweep(resume)[0])
    elif plan_file is None:
        raise BadInput("give a sweep plan file, or --resume SWEEP_ID")
    else:
        plan = load_plan(plan_file, max_variants)
    if limit is not None:
        plan = Plan.model_validate({**plan.model_dump(), "base": {**plan.base, "limit": limit}})

    def started(sweep_id: str) -> None:
        err.print(f"sweep {sweep_id}: if it is cut short, continue with: joulescore sweep --resume {sweep_id}")

    def report(name: str, outcome: RunRecord | str) -> None:
        if isinstance(outcome, str):
            err.print(f"{name}: failed: {outcome}")
        else:
            err.print(f"{name}: {outcome.status}, {outcome.j_per_query} J/query "
                      f"({outcome.meter.kind}), run {outcome.run_id}")

    sweep_id = run_sweep(plan, store, run_json_dir(db, target_dir), use_ray=use_ray, report=report,
                         resume_id=resume, on_start=started)
    advice = advise(store, sweep_id, None, None)
    if as_json:
        print_json(out, advice)
    else:
        print_advice(advice)
        out.print(f"sweep id {sweep_id}: joulescore advise {sweep_id} --max-quality-drop 1 --max-p90-latency 2s")


@app.command()
def sweeps(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List stored sweeps: id, name, task and how many variants finished."""
    rows = read_store(db).list_sweeps()
    if as_json:
        print_json(out, rows)
        return
    if not rows:
        out.print("no stored sweeps yet: try `joulescore sweep examples/plan.yaml`")
        return
    table = Table(title="stored sweeps")
    id_column(table, "sweep", [r["sweep_id"] for r in rows])
    id_column(table, "name", [r["name"] for r in rows])
    id_column(table, "task", [str(r["task"]) for r in rows])
    for col in ("created", "variants", "complete", "failed", "other"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["sweep_id"], r["name"], str(r["task"]), r["created_at"], str(r["variants"]),
                      str(r["complete"]), str(r["failed"]), str(r["variants"] - r["complete"] - r["failed"]))
    out.print(table)


@app.command(name="advise")
def advise_cmd(
    sweep_id: Annotated[str, typer.Argument(help="a sweep id printed by `joulescore sweep`")],
    max_quality_drop: Annotated[Optional[float], typer.Option(help="largest quality loss vs the baseline, in points (metric x 100: 1 = one percentage point)")] = None,
    max_p90_latency: Annotated[Optional[str], typer.Option(help="largest p90 end-to-end latency, e.g. 2s or 500ms")] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the advice as JSON")] = False,
) -> None:
    """The energy-quality-latency Pareto set of a sweep and the variant to run."""
    from joulescore.bench.advise import advise, parse_seconds

    limit_s = parse_seconds(max_p90_latency) if max_p90_latency is not None else None
    advice = advise(read_store(db), sweep_id, max_quality_drop, limit_s)
    if as_json:
        print_json(out, advice)
    else:
        print_advice(advice)
