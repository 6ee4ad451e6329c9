"""A small results database for the report's tests: real SQLite, written through the store API."""

from __future__ import annotations

from pathlib import Path

from joulescore.model.record import RunRecord
from joulescore.report.synthetic import SyntheticRun, store_run
from joulescore.store.sqlite import Store

XSS = "<img src=x onerror=alert(1)>"
BUSY_REASON = "other processes used 48% of the machine's CPU"


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
    """Sentiment runs (two a sweep's variants), chat runs under two reasoning modes and one disturbed."""
    with Store(path) as store:
        for run in sentiment_runs():
            store_run(store, run)
        store_run(store, SyntheticRun("c-off", "thinker", [2.0] * 8, task="chat", reasoning="off"))
        store_run(store, SyntheticRun("c-on", "thinker", [6.0] * 8, task="chat", reasoning="on",
                                      seconds=[3.0] * 8))
        # a run that a busy neighbour disturbed, with a 95% interval (the sections issue 12 adds to the record)
        store_run(store, SyntheticRun("c-busy", "busy-model", [3.0, 3.5, 4.0, 4.5], task="chat"))
        marked = store.record("c-busy").as_json() | {
            "interference": {"measured": True, "disturbed": True, "reason": BUSY_REASON},
            "interval": {"method": "bootstrap", "n": 4, "j_per_query_low": 3.2, "j_per_query_high": 4.3}}
        store.set_status("c-busy", "complete", RunRecord.model_validate(marked))
        if sweep:
            store.create_sweep("sw1", "threads", {"name": "threads", "task": "sentiment", "baseline": "two"})
            for pos, (variant, energy) in enumerate((("two", 2.0), ("one", 1.5))):
                run_id = f"sw1-{variant}"
                store_run(store, SyntheticRun(run_id, "smollm2", [energy] * 6, seconds=[1.0 + pos] * 6))
                store.set_variant("sw1", pos, variant, {}, "complete", run_id)
    return path
