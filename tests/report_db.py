"""A small results database for the report's tests: real SQLite, written through the store API."""

from __future__ import annotations

from pathlib import Path

from joulescore.report.synthetic import SyntheticRun, store_run
from joulescore.store.sqlite import Store

XSS = "<img src=x onerror=alert(1)>"


def sentiment_runs() -> list[SyntheticRun]:
    """Six sentiment runs in one peer group (so they get stars), one measured, one with a hostile name."""
    runs = []
    for i in range(6):
        runs.append(SyntheticRun(
            run_id=f"s{i}", model=XSS if i == 3 else f"model-{i}", energy_j=[1.0 + i + 0.05 * k for k in range(12)],
            correct=[k % (i + 2) != 0 for k in range(12)], input_tokens=[30 + 7 * k for k in range(12)],
            seconds=[0.5 + 0.1 * i] * 12, kind="measured" if i == 0 else "estimated",
            uncertainty_pct=None if i == 0 else 30.0, backend="transformers" if i == 5 else "llama.cpp",
            notes=[f"note for {XSS} <script>alert(2)</script>"] if i == 3 else []))
    return runs


def build_db(path: Path, sweep: bool = True) -> Path:
    """Sentiment runs (one a sweep of two variants), chat runs under two reasoning modes."""
    with Store(path) as store:
        for run in sentiment_runs():
            store_run(store, run)
        store_run(store, SyntheticRun("c-off", "thinker", [2.0] * 8, task="chat", reasoning="off"))
        store_run(store, SyntheticRun("c-on", "thinker", [6.0] * 8, task="chat", reasoning="on",
                                      seconds=[3.0] * 8))
        if sweep:
            store.create_sweep("sw1", "threads", {"name": "threads", "task": "sentiment", "baseline": "two"})
            for pos, (variant, energy) in enumerate((("two", 2.0), ("one", 1.5))):
                run_id = f"sw1-{variant}"
                store_run(store, SyntheticRun(run_id, "smollm2", [energy] * 6, seconds=[1.0 + pos] * 6))
                store.set_variant("sw1", pos, variant, {}, "complete", run_id)
    return path
