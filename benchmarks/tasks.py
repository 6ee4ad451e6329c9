"""Every task with its default model(s): energy, quality and time, one table row per run.

    PYTHONPATH=. python benchmarks/tasks.py --limit 100 --db /tmp/tasks.db [--threads 1]

SmolLM2-135M (llama.cpp) runs all six tasks; all-MiniLM-L6-v2 (encoder) runs
sentence-similarity.  Runs go to the given database, so ``joulescore board``
and ``joulescore label`` work on them afterwards.  The row of each run is printed
as soon as it ends (a long run can be stopped and still leave its finished rows).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from joulescore.bench.session import start
from joulescore.model.config import RunConfig
from joulescore.store.sqlite import Store

#: (task, model alias, backend): the fast ones first, so a stopped run still covers most tasks
PLAN = (
    ("sentence-similarity", "minilm-l6", "encoder"),
    ("sentiment", "smollm2-135m", "llama.cpp"),
    ("sentence-similarity", "smollm2-135m", "llama.cpp"),
    ("chat", "smollm2-135m", "llama.cpp"),
    ("reasoning", "smollm2-135m", "llama.cpp"),
    ("extractive-qa", "smollm2-135m", "llama.cpp"),
    ("summarization", "smollm2-135m", "llama.cpp"),
)
HEADER = ("task", "model", "prompts", "Wh/1k q", "J/query", "J/out tok", "mark", "quality", "measured s",
          "wall s", "run")


def row(record: dict, wall_s: float) -> tuple[str, ...]:
    q = record["quality"]
    value = "n/a" if q["value"] is None else f"{q['value']:.4g}"
    extra = "".join(f", {k} {v:.4g}" for k, v in q["details"].items() if k == "f1")

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4g}"

    return (record["task"]["name"], record["model"]["name"], str(record["counts"]["succeeded"]),
            f(record["wh_per_1000_queries"]), f(record["j_per_query"]), f(record["j_per_output_token"]),
            record["meter"]["kind"].upper(), f"{q['metric']} {value}{extra}", f"{record['duration_s']:.1f}",
            f"{wall_s:.1f}", record["run_id"])


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (HEADER, *rows)) for i in range(len(HEADER))]
    for r in (HEADER, *rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--db", type=Path, default=Path("/tmp/joulescore-tasks.db"))
    ap.add_argument("--threads", type=int, default=None, help="engine threads (1 on a busy shared machine)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--protocol", default="energy-score", choices=("energy-score", "natural"))
    ap.add_argument("--tasks", nargs="*", default=None, help="only these tasks")
    args = ap.parse_args()
    store = Store(args.db)
    rows: list[tuple[str, ...]] = []
    for task, model, backend in PLAN:
        if args.tasks and task not in args.tasks:
            continue
        from joulescore.tasks.spec import load_spec

        new_tokens = 10 if args.protocol == "energy-score" else load_spec(task).natural_max_new_tokens
        config = RunConfig(model=model, task=task, backend=backend, limit=args.limit, warmup=args.warmup,
                           protocol=args.protocol, max_new_tokens=new_tokens, threads=args.threads)
        t0 = time.perf_counter()
        record, _ = start(config, store, args.db.parent / "runs")
        rows.append(row(record, time.perf_counter() - t0))
        print(f"\n## after {task} ({model}), --limit {args.limit}, protocol {args.protocol}")
        print_table(rows)


if __name__ == "__main__":
    main()
