"""How good is ``joulescore compare``'s verdict on this machine? False alarms, detection and sensitivity.

Under the machine's own meter (the estimator on a VM), with the default model on ``--prompts`` chat prompts
(energy-score protocol), every pair of runs is made the way the CI recipe makes it:

- **false alarms**: ``--pairs`` pairs with identical settings (``--base-tokens`` new tokens on both sides).
  Half are interleaved (``compare --interleave``: A and B in alternating blocks); the other half are two
  plain runs made ``--apart-s`` seconds apart, so the machine's drift between runs is in them.  Target: at
  most 5% say ``regression`` or ``improvement``.
- **detection**: ``--pairs`` interleaved pairs where B writes ``--heavier-tokens`` new tokens against
  ``--base-tokens`` (13 against 10: about 1.3x the energy).  Target: at least 90% say ``regression``.
- **sensitivity**: for each of ``--levels`` (B's new tokens), ``--pairs`` interleaved pairs; the smallest
  measured change that says ``regression`` in at least 90% of its pairs.

    python benchmarks/compare_power.py [--pairs 20] [--prompts 100] [--apart-s 120] [--levels 11,12]

Each pair is stored in ``--db`` (a temporary database by default) as ordinary runs.  This takes hours at
the defaults on a 2-vCPU VM; the table says which settings made it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from joulescore.bench import session
from joulescore.bench.compare import compare
from joulescore.bench.compare_data import from_store
from joulescore.bench.interleave import interleave_settings
from joulescore.model.config import RunConfig
from joulescore.store.sqlite import Store


def settings(prompts: int, tokens: int) -> RunConfig:
    return RunConfig.model_validate({"task": "chat", "limit": prompts, "max_new_tokens": tokens})


def one_pair(store: Store, a: RunConfig, b: RunConfig, blocks: int, apart_s: float | None,
             threshold: float) -> dict[str, Any]:
    """One comparison: interleaved (``apart_s`` None), or two plain runs ``apart_s`` seconds apart."""
    if apart_s is None:
        id_a, id_b = interleave_settings((a, b), store, None, blocks)
    else:
        id_a = session.start(a, store, None)[0].run_id
        time.sleep(apart_s)
        id_b = session.start(b, store, None)[0].run_id
    result = compare([from_store(store, id_a)], [from_store(store, id_b)], threshold,
                     allowed=("disturbed",))  # the benchmark counts every pair; disturbed runs are noted
    return {"verdict": result["verdict"], "ratio": result["figures"]["j_per_query"]["ratio"],
            "drift": result["drift"]["flagged"]}


def summarize(name: str, pairs: list[dict[str, Any]], target: str) -> list[str]:
    counts = {v: sum(p["verdict"] == v for p in pairs) for v in ("regression", "improvement", "no change",
                                                                "inconclusive")}
    ratios = [p["ratio"] for p in pairs]
    return [name, str(len(pairs)), f"{statistics.median(ratios):.3f}" if ratios else "-",
            *(str(counts[v]) for v in counts), str(sum(p["drift"] for p in pairs)), target]


def run(args: argparse.Namespace, store: Store, console: Console) -> list[list[str]]:
    base = settings(args.prompts, args.base_tokens)
    rows: list[list[str]] = []
    half = args.pairs // 2
    same_interleaved = [one_pair(store, base, base, args.blocks, None, args.threshold) for _ in range(half)]
    same_apart = [one_pair(store, base, base, args.blocks, args.apart_s, args.threshold)
                  for _ in range(args.pairs - half)]
    alarms = sum(p["verdict"] in ("regression", "improvement") for p in same_interleaved + same_apart)
    rows.append(summarize("identical, interleaved", same_interleaved, ""))
    rows.append(summarize(f"identical, {args.apart_s:g} s apart", same_apart, ""))
    rows.append(["false alarms, all", str(args.pairs), "-", "-", "-", "-", "-", "-",
                 f"{alarms / args.pairs:.0%} (target <= 5%)"])
    for tokens in sorted({args.heavier_tokens, *args.levels}):
        pairs = [one_pair(store, base, settings(args.prompts, tokens), args.blocks, None, args.threshold)
                 for _ in range(args.pairs)]
        rate = sum(p["verdict"] == "regression" for p in pairs) / len(pairs)
        target = " (target >= 90%)" if tokens == args.heavier_tokens else ""
        rows.append(summarize(f"{tokens} vs {args.base_tokens} tokens, interleaved", pairs,
                              f"detected {rate:.0%}{target}"))
        console.print(f"done: {tokens} vs {args.base_tokens} tokens: detected {rate:.0%}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--apart-s", type=float, default=120.0)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--base-tokens", type=int, default=10)
    parser.add_argument("--heavier-tokens", type=int, default=13)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",") if x], default=[11, 12])
    parser.add_argument("--threshold", type=float, default=0.05, help="as a share: 0.05 is 5%%")
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    console = Console()
    db = args.db or Path(tempfile.mkdtemp(prefix="compare-power-")) / "results.db"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with Store(db) as store:
        rows = run(args, store, console)
    table = Table(title=f"compare power: {args.prompts} chat prompts, threshold {args.threshold:.0%}, "
                        f"{args.blocks} blocks, SmolLM2-135M, energy-score protocol (db {db})")
    for col in ("pairs of runs", "n", "B/A median", "regression", "improvement", "no change", "inconclusive",
                "drift flagged", "result"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print("sensitivity: the smallest B/A median above whose row says detected >= 90%")


if __name__ == "__main__":
    main()
