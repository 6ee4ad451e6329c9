"""Harness overhead: joulescore's runner against a plain llama-cpp-python loop.

Both answer the same prompts of the chat task with the same settings (the
energy-score protocol: greedy, exactly 10 new tokens, batch 1, same threads
and context).  The harness run includes everything a user gets: meter reads
at three points per prompt, a SQLite commit per prompt and the progress bar.
Rounds alternate raw/harness so drift on a shared machine hits both alike.

    python benchmarks/overhead.py [--prompts 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from llama_cpp import Llama, LogitsProcessorList
from rich.console import Console
from rich.table import Table

from joulescore.backends.llamacpp import LlamaCppBackend
from joulescore.bench.runner import run_pending
from joulescore.bench.session import prepare, run_spec
from joulescore.model.config import RunConfig
from joulescore.report.console import RichProgress
from joulescore.store.sqlite import Store


def raw_loop(path: str, prompts: list[list[dict[str, str]]], threads: int, n_ctx: int,
             new_tokens: int, eog: frozenset[int]) -> tuple[int, float]:
    """The plain loop a user would write: create_chat_completion with the same settings."""
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
    banned = np.fromiter(eog, dtype=np.int64)

    def ban_eog(_ids: object, scores: np.ndarray) -> np.ndarray:
        scores[banned] = -np.inf  # every token is below min_new_tokens = max_new_tokens
        return scores

    processors = LogitsProcessorList([ban_eog])
    tokens = 0
    start = time.perf_counter()
    for messages in prompts:
        out = llm.create_chat_completion(messages=messages, max_tokens=new_tokens, temperature=0.0,
                                         top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                                         logits_processor=processors)
        tokens += out["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - start
    llm.close()
    return tokens, elapsed


def harness(config: RunConfig, db: Path) -> tuple[int, float]:
    """joulescore's own loop: meter reads, per-prompt commits, progress bar."""
    p = prepare(config)
    store = Store(db)
    run_id = f"bench-{time.time_ns()}"
    store.create_run(run_id, len(p.prompts), run_spec(p))
    console = Console(stderr=True)
    bar = RichProgress(console, len(p.prompts), 0, p.meter.provenance().kind)
    start = time.perf_counter()
    run_pending(store, run_id, p.backend, p.meter, p.prompts, p.config.generation(), bar)
    elapsed = time.perf_counter() - start
    bar.close()
    tokens = sum(r.output_tokens for r in store.results(run_id))
    p.backend.close()
    store.close()
    return tokens, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    config = RunConfig(model="smollm2-135m", task="chat", limit=args.prompts, warmup=0)
    probe = prepare(config)
    assert isinstance(probe.backend, LlamaCppBackend)
    path = probe.backend.info().path
    threads, n_ctx, eog = probe.backend.threads, config.n_ctx, probe.backend._eog
    messages = [p.messages for p in probe.prompts]
    # Warm both paths (page cache, CPU clocks) before timing.
    probe.backend.generate(messages[0], config.generation())
    probe.backend.close()

    raw_rates: list[float] = []
    harness_rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            tokens, elapsed = raw_loop(str(path), messages, threads, n_ctx, config.max_new_tokens, eog)
            raw_rates.append(tokens / elapsed)
            tokens_h, elapsed_h = harness(config, Path(tmp) / f"bench{i}.db")
            harness_rates.append(tokens_h / elapsed_h)
            assert tokens_h == tokens, (tokens_h, tokens)

    table = Table(title=f"harness overhead: {args.prompts} chat prompts, SmolLM2-135M Q4_1, llama.cpp, "
                        f"{threads} threads, energy-score protocol")
    table.add_column("round")
    table.add_column("raw loop tok/s", justify="right")
    table.add_column("harness tok/s", justify="right")
    table.add_column("ratio", justify="right")
    for i, (raw, har) in enumerate(zip(raw_rates, harness_rates), start=1):
        table.add_row(str(i), f"{raw:.1f}", f"{har:.1f}", f"{har / raw:.3f}")
    raw_med, har_med = statistics.median(raw_rates), statistics.median(harness_rates)
    table.add_row("median", f"{raw_med:.1f}", f"{har_med:.1f}", f"{har_med / raw_med:.3f}")
    Console().print(table)
    verdict = "meets" if har_med / raw_med >= 0.97 else "MISSES"
    print(f"harness keeps {100 * har_med / raw_med:.1f}% of the raw loop's tokens/s ({verdict} the 97% target)")


if __name__ == "__main__":
    main()
