"""Interference: the same rating quiet, beside a CPU hog, and beside a hog with ``--threads auto``.

Each way runs the same chat prompts (SmolLM2-135M, llama.cpp, the energy-score
protocol) ``--rounds`` times through the real CLI, rounds interleaved so that
drift on a shared machine hits every way alike.  For each it prints Wh per
1,000 queries (the run's attributed share, and the whole machine's), output
tokens/s, others' share of the CPU, steal, the threads used and whether the run
was flagged DISTURBED.  Target: the attributed figure with ``--threads auto``
beside one hog within 25% of the quiet figure.

``--precision-check`` rates each of ``--tasks`` (chat, sentiment) in full
(``--full-limit`` prompts, 1,000: the whole task) and, from that one run's
per-prompt rows, replays ``--precision 2%`` and ``5%`` with the plain mean
(the rule before the regression estimator) and with the regression estimator,
over ``--replay-seeds`` shuffles (joulescore/bench/replay.py): prompts needed,
the figure reached, its interval, how far it is from the full rating and how
often the interval holds it.  Then it runs the real ``--precision`` ratings
(``--no-real-runs`` skips them) beside them.  ``--replay-run RUN --db DB``
replays a full run already stored, and runs nothing.

    python benchmarks/interference.py [--prompts 100] [--rounds 3] [--precision-check [--full-limit 1000]]
    python benchmarks/interference.py --only-precision [--full-limit 1000] [--tasks chat,sentiment]
    python benchmarks/interference.py --only-precision --replay-run RUN_ID --db results.db

"Quiet" is only as quiet as the machine: the before-run share of others' CPU
is printed for every run, so a busy "quiet" baseline shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("quiet", "one hog", "one hog + --threads auto")


@contextmanager
def hog(active: bool) -> Iterator[None]:
    """One busy-looping process (not pinned: the scheduler places it, as it would a neighbour's job)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if active else None
    try:
        if proc is not None:
            time.sleep(1.0)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def rate(db: Path, *args: str) -> tuple[dict[str, Any], float]:
    """One ``joulescore run --json``: its record and its wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "joulescore.cli", "run", "--db", str(db), "--json", "--no-progress",
                           *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall


def figures(record: dict[str, Any]) -> dict[str, Any]:
    it = record.get("interference") or {}
    return {
        "wh": record["wh_per_1000_queries"],
        "whole_wh": record.get("whole_machine_wh_per_1000_queries"),
        "tok_s": record["tokens_per_s"],
        "others": it.get("others_cpu_pct"),
        "steal": it.get("steal_pct"),
        "before": (it.get("before_run") or {}).get("others_cpu_pct"),
        "threads": record["model"]["extra"].get("threads"),
        "disturbed": bool(it.get("disturbed")),
        "ci": record.get("interval") or {},
    }


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def _f(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def ways(args: argparse.Namespace, db: Path) -> dict[str, list[dict[str, Any]]]:
    base = ("--limit", str(args.prompts), "--warmup", str(args.warmup))
    out: dict[str, list[dict[str, Any]]] = {w: [] for w in WAYS}
    for i in range(args.rounds):
        for way in WAYS:
            extra = ("--threads", "auto") if "auto" in way else ()
            with hog(way != "quiet"):
                record, _ = rate(db, *base, *extra)
            out[way].append(figures(record))
            r = out[way][-1]
            print(f"round {i + 1} {way}: {_f(r['wh'])} Wh/1k q (whole machine {_f(r['whole_wh'])}), "
                  f"{_f(r['tok_s'])} tok/s, others {_f(r['others'], '.1f')}% (before {_f(r['before'], '.1f')}%), "
                  f"threads {r['threads']}, {'DISTURBED' if r['disturbed'] else 'not flagged'}", file=sys.stderr)
    return out


def ways_table(results: dict[str, list[dict[str, Any]]], prompts: int) -> Table:
    table = Table(title=f"interference: {prompts} chat prompts, SmolLM2-135M, llama.cpp, {os.cpu_count()} CPUs "
                        "(medians over the rounds)")
    for col in ("way", "Wh/1k q (attributed)", "Wh/1k q (whole machine)", "tok/s", "others' CPU", "before run",
                "steal", "threads", "flagged"):
        table.add_column(col, justify="left" if col == "way" else "right")
    for way, rows in results.items():
        flagged = sum(r["disturbed"] for r in rows)
        table.add_row(way, _f(_median(rows, "wh")), _f(_median(rows, "whole_wh")), _f(_median(rows, "tok_s"), ".1f"),
                      _f(_median(rows, "others"), ".1f") + "%", _f(_median(rows, "before"), ".1f") + "%",
                      _f(_median(rows, "steal"), ".1f") + "%", str(rows[0]["threads"]), f"{flagged}/{len(rows)}")
    return table


def _ci(low: float | None, high: float | None) -> str:
    return f"{_f(low, '.4g')}-{_f(high, '.4g')}"


def _off(value: float | None, full: float) -> str:
    return "n/a" if value is None or not full else f"{100 * (value - full) / full:+.1f}%"


def _replays(table: Table, rows: list[Any], full_j: float, precision: float, seeds: int) -> None:
    """The plain mean (today's rule) and the regression estimator, replayed on the full run's rows."""
    from joulescore.bench.population import row_x
    from joulescore.bench.replay import replay
    from joulescore.store.estimate import wh

    y, ok, x = [r.energy_j for r in rows], [r.ok for r in rows], [row_x(r) for r in rows]
    for regression in (False, True):
        runs = [rp for s in range(seeds) if (rp := replay(y, ok, x, precision, regression, s)) is not None]
        if not runs:
            continue
        first = runs[0]
        covered = sum(rp.low <= full_j <= rp.high for rp in runs)
        worst = max(abs(rp.j_per_query - full_j) / full_j for rp in runs) * 100
        # not reached: the prompts it would need, projected from the half-width at the end (it goes as 1/sqrt(n))
        needs = "" if first.reached else f" (not reached; ~{first.prompts * (first.half_width_pct / precision) ** 2:,.0f})"
        table.add_row(f"replay --precision {precision:g}%", first.estimator, f"{first.prompts}{needs}",
                      f"{statistics.median(rp.prompts for rp in runs):.0f}", _f(wh(first.j_per_query), ".4g"),
                      _ci(wh(first.low), wh(first.high)), _f(first.half_width_pct, ".2f") + "%",
                      _off(first.j_per_query, full_j), f"{covered}/{len(runs)}, worst {worst:.1f}%", "-", "-")


def _diagnostics(rows: list[Any]) -> str:
    """How much per-prompt energy varies, and how much of it the prefilled tokens explain."""
    import numpy as np

    from joulescore.bench.population import row_x

    y = np.array([r.energy_j for r in rows])
    x = np.array([row_x(r) for r in rows])
    if len(y) < 3 or y.mean() <= 0 or x.std() == 0:
        return ""
    slope, icept = np.polyfit(x, y, 1)
    resid = y - (slope * x + icept)
    return (f"per-prompt energy: CV {y.std() / y.mean():.2f}, p99/median {np.quantile(y, 0.99) / np.median(y):.1f}; "
            f"correlation with uncached input tokens {np.corrcoef(x, y)[0, 1]:.3f}, residual CV "
            f"{resid.std() / y.mean():.2f}")


def precision_check(args: argparse.Namespace, db: Path) -> list[Table]:
    """--precision before (plain mean) and after (regression) beside the full rating, per task: replayed on the
    full run's rows over ``--replay-seeds`` shuffles (seed 0 is the real runs' order), then real runs."""
    from joulescore.store.sqlite import Store

    extra = tuple(shlex.split(args.run_args))
    tables = []
    for task in args.tasks.split(",") if not args.replay_run else [""]:
        if args.replay_run:  # a full run already stored in --db: replay only
            with Store(db) as store:
                full, wall = store.record(args.replay_run).as_json(), 0.0
            task = full["task"]["name"]
        else:
            full, wall = rate(db, "--task", task, "--limit", str(args.full_limit), *extra)
        with Store(db) as store:
            rows = sorted(store.results(full["run_id"]), key=lambda r: r.prompt_index)
        if full["config"].get("precision") is not None:
            raise SystemExit(f"run {full['run_id']} is a --precision run: replay needs a full run in dataset order")
        full_j = full["j_per_query"]
        table = Table(title=f"--precision on {task} beside the full rating ({len(rows)} prompts); replays: seed 0 "
                            f"and the median of {args.replay_seeds} shuffles. {_diagnostics(rows)}")
        for col in ("rating", "estimator", "prompts", f"median of {args.replay_seeds}", "Wh/1k q", "95% CI", "+/-",
                    "off full", "full in CI", "wall time", "flagged"):
            table.add_column(col, justify="left" if col in ("rating", "estimator") else "right")
        table.caption = ("replays keep each prompt's energy and cache reuse from the full run (dataset order); "
                         "\"~N\": prompts a rule that never stopped would need (projected, not measured); "
                         "\"full in CI\": shuffles whose interval holds the full figure, and the worst miss; real "
                         "runs with --limit below the task's size draw their prompts from the whole task (shuffled), "
                         "so they are another set than the full run's")
        ci = full.get("interval") or {}
        table.add_row(f"full ({len(rows)} prompts)", "plain mean", str(full["counts"]["done"]), "-",
                      _f(full["wh_per_1000_queries"], ".4g"),
                      _ci(ci.get("wh_per_1000_queries_low"), ci.get("wh_per_1000_queries_high")),
                      _f(ci.get("half_width_pct"), ".2f") + "%", "-", "-", "stored" if args.replay_run else f"{wall:.0f} s",
                      "DISTURBED" if (full.get("interference") or {}).get("disturbed") else "no")
        for precision in args.precisions:
            _replays(table, rows, full_j, precision, args.replay_seeds)
        for precision in args.precisions if args.real_runs and not args.replay_run else ():
            record, wall = rate(db, "--task", task, "--precision", f"{precision:g}%", "--limit", str(args.full_limit),
                                *extra)
            ci = record.get("interval") or {}
            table.add_row(f"run --precision {precision:g}%", str(ci.get("estimator")), str(record["counts"]["done"]),
                          "-", _f(record["wh_per_1000_queries"], ".4g"),
                          _ci(ci.get("wh_per_1000_queries_low"), ci.get("wh_per_1000_queries_high")),
                          _f(ci.get("half_width_pct"), ".2f") + "%", _off(record["j_per_query"], full_j), "-",
                          f"{wall:.0f} s",
                          "DISTURBED" if (record.get("interference") or {}).get("disturbed") else "no")
        tables.append(table)
        print(f"{task}: full run {full['run_id']} in {db}", file=sys.stderr)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--precision-check", action="store_true")
    parser.add_argument("--full-limit", type=int, default=1000, help="prompts in each full rating")
    parser.add_argument("--only-precision", action="store_true", help="only the --precision check")
    parser.add_argument("--tasks", default="chat,sentiment", help="tasks for the --precision check")
    parser.add_argument("--precisions", type=float, nargs="+", default=[2.0, 5.0])
    parser.add_argument("--replay-seeds", type=int, default=20, help="shuffles replayed on each full run's rows")
    parser.add_argument("--no-real-runs", dest="real_runs", action="store_false",
                        help="replay only: no real --precision runs")
    parser.add_argument("--run-args", default="", help="more flags for every run of the --precision check")
    parser.add_argument("--db", type=Path, help="keep the runs in this database (default: a temporary one)")
    parser.add_argument("--replay-run", help="replay only, on this full run already stored in --db (runs nothing)")
    args = parser.parse_args()
    console = Console(width=220)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "interference.db"
        if args.only_precision:
            for table in precision_check(args, db):
                console.print(table)
            return
        results = ways(args, db)
        console.print(ways_table(results, args.prompts))
        quiet, auto = _median(results["quiet"], "wh"), _median(results[WAYS[2]], "wh")
        if quiet and auto:
            off = 100 * (auto - quiet) / quiet
            verdict = "meets" if abs(off) <= 25 else "MISSES"
            console.print(f"attributed Wh/1k q beside one hog with --threads auto is {off:+.1f}% from quiet "
                          f"({verdict} the 25% target)")
        if args.precision_check:
            for table in precision_check(args, db):
                console.print(table)


if __name__ == "__main__":
    main()
