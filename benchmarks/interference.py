"""Interference: the same rating quiet, beside a CPU hog, and beside a hog with ``--threads auto``.

Each way runs the same chat prompts (SmolLM2-135M, llama.cpp, the energy-score
protocol) ``--rounds`` times through the real CLI, rounds interleaved so that
drift on a shared machine hits every way alike.  For each it prints Wh per
1,000 queries (the run's attributed share, and the whole machine's), output
tokens/s, others' share of the CPU, steal, the threads used and whether the run
was flagged DISTURBED.  Target: the attributed figure with ``--threads auto``
beside one hog within 25% of the quiet figure.

``--precision-check`` also rates the default task with ``--precision 2%``
beside a full rating of ``--full-limit`` prompts (1,000: the whole task), and
prints prompts used, wall time, both figures and the interval.

    python benchmarks/interference.py [--prompts 100] [--rounds 3] [--precision-check [--full-limit 1000]]
    python benchmarks/interference.py --only-precision [--full-limit 1000]

"Quiet" is only as quiet as the machine: the before-run share of others' CPU
is printed for every run, so a busy "quiet" baseline shows.
"""

from __future__ import annotations

import argparse
import json
import os
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


def precision_check(args: argparse.Namespace, db: Path) -> Table:
    """A --precision 2% rating beside the full one: prompts, wall time, figures and intervals."""
    table = Table(title="--precision 2% beside the full rating (chat task)")
    for col in ("rating", "prompts", "wall time", "Wh/1k q", "95% CI", "+/-", "flagged"):
        table.add_column(col, justify="left" if col == "rating" else "right")
    for name, extra in ((f"full ({args.full_limit} prompts)", ("--limit", str(args.full_limit))),
                        ("--precision 2%", ("--precision", "2%", "--limit", str(args.full_limit)))):
        record, wall = rate(db, *extra)
        ci = record.get("interval") or {}
        disturbed = (record.get("interference") or {}).get("disturbed")
        table.add_row(name, str(record["counts"]["done"]), f"{wall:.0f} s", _f(record["wh_per_1000_queries"], ".4g"),
                      f"{_f(ci.get('wh_per_1000_queries_low'), '.4g')}-{_f(ci.get('wh_per_1000_queries_high'), '.4g')}",
                      _f(ci.get("half_width_pct"), ".2f") + "%", "DISTURBED" if disturbed else "no")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--precision-check", action="store_true")
    parser.add_argument("--full-limit", type=int, default=1000)
    parser.add_argument("--only-precision", action="store_true", help="only the --precision check")
    args = parser.parse_args()
    console = Console(width=200)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "interference.db"
        if args.only_precision:
            console.print(precision_check(args, db))
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
            console.print(precision_check(args, db))


if __name__ == "__main__":
    main()
