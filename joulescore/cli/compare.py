"""``compare`` and ``check``: an energy verdict between two runs, and a run against an energy budget.

Exit statuses, as CI reads them: 0 no change or improvement (or within budget), 1 regression (or over
budget), 3 inconclusive (``--inconclusive-ok``: 0), 2 bad input or runs that are not comparable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from joulescore.cli.app import app, out
from joulescore.cli.console import plain, print_json
from joulescore.cli.options import DbOption, JsonOption, split_list
from joulescore.errors import BadInput
from joulescore.store.sqlite import Store, default_db_path
from joulescore.units import fmt


def parse_pct(text: str, flag: str) -> float:
    """``5%`` or ``5`` -> 0.05: a share given in percent."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        value = math.nan
    if not 0.0 < value < 100.0:
        raise BadInput(f"{flag} must be a percentage between 0 and 100, such as 5%, got {text!r}")
    return value / 100.0


def _store_for(refs: str, db: Path | None) -> Store | None:
    """The database holding the run ids among ``refs`` (read-only), or None when all are files."""
    names = split_list(refs)
    if all(Path(n).expanduser().is_file() or n.endswith(".json") for n in names):
        return None
    return Store(db or default_db_path(), readonly=True)


def load_sides(a: str, b: str, db_a: Path | None, db_b: Path | None) -> tuple[list[Any], list[Any]]:
    from joulescore.bench.compare_data import load_group

    store_a = _store_for(a, db_a)
    store_b = store_a if db_b == db_a and store_a is not None else _store_for(b, db_b)
    try:
        return load_group(a, store_a), load_group(b, store_b)
    finally:
        for store in {s for s in (store_a, store_b) if s is not None}:
            store.close()


def _ratio_cell(f: dict[str, Any]) -> str:
    if f["ratio_low"] is None:
        return f"{f['ratio']:.3f}"
    return f"{f['ratio']:.3f} ({f['ratio_low']:.3f}-{f['ratio_high']:.3f})"


def comparison_table(result: dict[str, Any]) -> Table:
    """The figures side by side, B/A with its interval; quality, latency and tok/s beside them."""
    a, b = result["a"], result["b"]
    table = Table(title=f"A: {', '.join(a['runs'])}  vs  B: {', '.join(b['runs'])}  ({result['pairing']})")
    for col in ("figure", "A", "B", "B/A (95% interval)", ""):
        table.add_column(col, overflow="fold")
    for name, f in result["figures"].items():
        mark = "<- verdict" if name == result["figure"] else ""
        table.add_row(f["unit"], fmt(f["a"]), fmt(f["b"]), _ratio_cell(f), mark)
    q = result["quality"]
    diff = "n/a" if q["difference"] is None else f"{q['difference']:+.4g}"
    if q.get("difference_low") is not None:
        diff += f" ({q['difference_low']:+.4g} to {q['difference_high']:+.4g})"
    table.add_row(f"quality {q['metric']}", fmt(q["a"]), fmt(q["b"]), f"B-A {diff}", "")
    for key, label in (("latency_p50_s", "latency p50 s"), ("latency_p90_s", "latency p90 s"),
                       ("tokens_per_s", "tok/s")):
        ratio = "" if not a[key] or b[key] is None else f"{b[key] / a[key]:.3f}"
        table.add_row(label, fmt(a[key]), fmt(b[key]), ratio, "")
    d = result["drift"]
    if d["ratio"] is not None:
        table.add_row("probe s (machine speed)", fmt(d["a_s"]), fmt(d["b_s"]), f"{d['ratio']:.3f}",
                      "DRIFT" if d["flagged"] else "")
    return table


def print_comparison(result: dict[str, Any]) -> None:
    out.print(comparison_table(result))
    if "interleaved" in result:
        iv = result["interleaved"]
        out.print(plain(f"interleaved: new runs {iv['runs'][0]} (settings of {iv['settings_of'][0]}) and "
                        f"{iv['runs'][1]} (settings of {iv['settings_of'][1]}), {iv['blocks']} blocks each"))
    for line in result["allowed_differences"]:
        out.print(plain(f"allowed by --allow-different: {line}"))
    if result["drift"]["flagged"] or result["drift"]["ratio"] is None:
        out.print(plain(f"drift: {result['drift']['note']}"))
    out.print(plain(result["verdict_line"]), soft_wrap=True)


def run_interleaved(runs_a: list[Any], runs_b: list[Any], db: Path | None,
                    blocks: int) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Run A's and B's settings again in alternating blocks; the two new runs, and what was done."""
    from joulescore.bench.compare_data import from_store
    from joulescore.bench.interleave import interleave
    from joulescore.cli.options import open_store, run_json_dir

    if len(runs_a) != 1 or len(runs_b) != 1:
        raise BadInput("--interleave reruns one setting against another: give one run for A and one for B")
    with open_store(db) as store:
        id_a, id_b = interleave(runs_a[0], runs_b[0], store, run_json_dir(db, None), blocks)
        new_a, new_b = [from_store(store, id_a)], [from_store(store, id_b)]
    return new_a, new_b, {"blocks": blocks, "settings_of": [runs_a[0].source, runs_b[0].source],
                          "runs": [id_a, id_b], "order": "A B, B A, A B, ... by block"}


def run_compare(a: str, b: str, *, db_a: Path | None, db_b: Path | None, threshold: str, figure: str,
                allow_different: Optional[str], as_json: bool, inconclusive_ok: bool,
                blocks: Optional[int] = None) -> int:
    """Compare and print; returns the exit status (also used by ``run --baseline``)."""
    from joulescore.bench.compare import compare as build

    share = parse_pct(threshold, "--threshold")
    runs_a, runs_b = load_sides(a, b, db_a, db_b)
    interleaved = None
    if blocks is not None:
        runs_a, runs_b, interleaved = run_interleaved(runs_a, runs_b, db_a, blocks)
    result = build(runs_a, runs_b, share, figure.replace("-", "_"), split_list(allow_different))
    if interleaved is not None:
        result["interleaved"] = interleaved
    if inconclusive_ok and result["verdict"] == "inconclusive":
        result["exit_status"] = 0
    if as_json:
        print_json(out, result)
    else:
        print_comparison(result)
    return int(result["exit_status"])


ThresholdOption = Annotated[str, typer.Option(
    help="a change within this share either way is 'no change' (5% or 5)")]
FigureOption = Annotated[str, typer.Option(
    help="the figure the verdict is on: j-per-query, wh-per-1000-queries (the same ratio), j-per-output-token, "
         "prefill-j-per-query, decode-j-per-query, gpu-j-per-query")]
AllowOption = Annotated[Optional[str], typer.Option(
    "--allow-different", help="compare anyway across these differences (comma-separated): task, protocol, "
                              "hardware, meter, disturbed, partial; the output says so")]
InconclusiveOkOption = Annotated[bool, typer.Option(
    "--inconclusive-ok", help="exit 0, not 3, when the verdict is inconclusive")]


@app.command("compare")
def compare_command(
    a: Annotated[str, typer.Argument(help="the baseline: a run id, a run.json, or a comma-separated group")],
    b: Annotated[str, typer.Argument(help="the candidate, as A")],
    threshold: ThresholdOption = "5%",
    figure: FigureOption = "j-per-query",
    allow_different: AllowOption = None,
    inconclusive_ok: InconclusiveOkOption = False,
    db: DbOption = None,
    db_b: Annotated[Optional[Path], typer.Option("--db-b", help="B's database, when not --db's")] = None,
    interleave: Annotated[bool, typer.Option(
        "--interleave", help="run A's and B's settings again here, in alternating blocks of prompts (cancels the "
                             "machine's drift), store both runs in --db, and compare those")] = False,
    blocks: Annotated[int, typer.Option(help="with --interleave: blocks per side")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Did B's energy change from A's? A verdict with a 95% interval: exit 0 no change or improvement,
    1 regression, 3 inconclusive, 2 not comparable."""
    code = run_compare(a, b, db_a=db, db_b=db_b or db, threshold=threshold, figure=figure,
                       allow_different=allow_different, as_json=as_json, inconclusive_ok=inconclusive_ok,
                       blocks=blocks if interleave else None)
    raise typer.Exit(code)


def print_check(result: dict[str, Any]) -> None:
    table = Table(title=f"budgets of run {result['run']} ({result['meter']})")
    for col in ("figure", "budget", "value", "upper 95%", "judged on", "verdict"):
        table.add_column(col, overflow="fold")
    for r in result["budgets"]:
        table.add_row(r["unit"], fmt(r["budget"]), fmt(r["value"]), fmt(r["upper_95"]), r["judged_on"],
                      "OVER" if r["over"] else "within")
    out.print(table)
    over = [r["unit"] for r in result["budgets"] if r["over"]]
    out.print(plain(f"over budget: {', '.join(over)}" if over else "within budget"))




@app.command("check")
def check_command(
    run: Annotated[str, typer.Argument(help="a run id or a run.json")],
    max_wh_per_1000: Annotated[Optional[float], typer.Option(
        "--max-wh-per-1000", help="budget in Wh per 1,000 queries")] = None,
    max_j_per_query: Annotated[Optional[float], typer.Option(help="budget in J per query")] = None,
    max_j_per_token: Annotated[Optional[float], typer.Option(help="budget in J per output token")] = None,
    point: Annotated[bool, typer.Option(
        "--point", help="judge the point figure, not the upper bound of its 95% interval")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Is a run within its energy budget? Exit 1 when the upper bound of its 95% interval (or, with
    --point, the figure) is over any budget given."""
    from joulescore.bench.budget import check
    from joulescore.bench.compare_data import load_group

    budgets = {name: value for name, value in (("wh_per_1000_queries", max_wh_per_1000),
                                               ("j_per_query", max_j_per_query),
                                               ("j_per_output_token", max_j_per_token)) if value is not None}
    if "," in run:
        raise BadInput("check takes one run: a run id or a run.json")
    store = _store_for(run, db)
    try:
        (data,) = load_group(run, store)
    finally:
        if store is not None:
            store.close()
    result = check(data, budgets, point)
    if as_json:
        print_json(out, result)
    else:
        print_check(result)
    raise typer.Exit(result["exit_status"])


def load_baseline(ref: str, db: Path | None) -> Any:
    """``run --baseline``: read before the run starts, so that a bad baseline costs no run."""
    from joulescore.bench.compare_data import load_group

    store = _store_for(ref, db)
    try:
        return load_group(ref, store)
    finally:
        if store is not None:
            store.close()


def baseline_verdict(baseline: list[Any], store: Store, run_ids: list[str], threshold: str,
                     as_json: bool, run_json: list[dict[str, Any]]) -> int:
    """Compare the runs just made (B, a group with --repeats) with the baseline (A); the exit status."""
    from joulescore.bench.compare import compare as build
    from joulescore.bench.compare_data import from_store

    share = parse_pct(threshold, "--baseline-threshold")
    result = build(baseline, [from_store(store, r) for r in run_ids], share)
    if as_json:
        print_json(out, {"runs": run_json, "comparison": result})
    else:
        print_comparison(result)
    return int(result["exit_status"])
