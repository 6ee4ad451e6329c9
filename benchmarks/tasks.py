"""Every task with its default model(s): energy, quality and time, one table row per run.

    PYTHONPATH=. python benchmarks/tasks.py --limit 100 --db /tmp/tasks.db [--threads 1] [--images FOLDER]

SmolLM2-135M (llama.cpp) runs all six text tasks; all-MiniLM-L6-v2 (encoder) runs
sentence-similarity; Whisper tiny.en (whisper) runs asr on the espeak-ng clips
(made on first use, 1,000 in full), and EfficientNet-Lite0 (vision) runs
image-classification on ``--images FOLDER`` (no labelled image set ships, so
without it that row is skipped and says why).  The media rows give J per
audio-second (asr) and top-5 accuracy beside the headline figures.  Runs go to the given database, so ``joulescore board``
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
    ("asr", "whisper-tiny.en", "whisper"),
    ("image-classification", "efficientnet-lite0", "vision"),
)
#: tasks whose prompts are files: their protocol is their own (no fixed token count)
MEDIA_TASKS = ("asr", "image-classification")
HEADER = ("task", "model", "prompts", "Wh/1k q", "J/query", "J/out tok", "mark", "quality", "measured s",
          "wall s", "run")


def row(record: dict, wall_s: float) -> tuple[str, ...]:
    q = record["quality"]
    value = "n/a" if q["value"] is None else f"{q['value']:.4g}"
    extra = "".join(f", {k} {v:.4g}" for k, v in q["details"].items() if k in ("f1", "top5_accuracy"))
    media = record.get("media") or {}
    if media.get("j_per_audio_s") is not None:
        extra += f", J/audio-s {media['j_per_audio_s']:.4g}"

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
    ap.add_argument("--images", type=Path, default=None,
                    help="image-classification's data: a folder of images and one JSONL of file, reference")
    args = ap.parse_args()
    store = Store(args.db)
    rows: list[tuple[str, ...]] = []
    for task, model, backend in PLAN:
        if args.tasks and task not in args.tasks:
            continue
        from joulescore.tasks.spec import load_spec

        if task == "image-classification" and args.images is None:
            print("\n## image-classification skipped: no labelled image set ships; give --images FOLDER")
            continue
        if task in MEDIA_TASKS:
            config = RunConfig(model=model, task=task, backend=backend, limit=args.limit, warmup=args.warmup,
                               threads=args.threads, dataset=str(args.images) if task != "asr" else None)
        else:
            new_tokens = 10 if args.protocol == "energy-score" else load_spec(task).natural_max_new_tokens
            config = RunConfig(model=model, task=task, backend=backend, limit=args.limit, warmup=args.warmup,
                               protocol=args.protocol, max_new_tokens=new_tokens, threads=args.threads)
        t0 = time.perf_counter()
        record, _ = start(config, store, args.db.parent / "runs")
        rows.append(row(record.as_json(), time.perf_counter() - t0))
        print(f"\n## after {task} ({model}), --limit {args.limit}, protocol {config.protocol}")
        print_table(rows)


if __name__ == "__main__":
    main()
