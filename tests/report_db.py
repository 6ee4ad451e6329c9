"""A small results database for the report's tests: real SQLite, written through the store API."""

from __future__ import annotations

from pathlib import Path

from joulescore.model.record import RunRecord
from joulescore.store.requests import RequestRow, RequestStore
from joulescore.store.sqlite import Store
from tests.synthetic import SyntheticRun, store_run

XSS = "<img src=x onerror=alert(1)>"
BUSY_REASON = "other processes used 48% of the machine's CPU"
H100 = [{"name": "NVIDIA H100 80GB HBM3"}]
#: proxy requests: 9 of a chat model (one the client closed), 4 of a model with a hostile name
TRAFFIC_START_UNIX = 1_767_225_600.0  # 2026-01-01 00:00 UTC
IDLE_J, IDLE_S = 40.0, 20.0


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


def proxy_rows(session_id: str) -> list[RequestRow]:
    """Finished requests as the proxy's session stores them, with a ±10% meter band."""
    rows = []
    for i in range(13):
        model = "chat-model" if i < 9 else XSS
        energy_j = 20.0 + 3.0 * i if i < 9 else 50.0 + i
        closed = i == 4
        rows.append(RequestRow(
            f"r{i}", session_id, TRAFFIC_START_UNIX + 30.0 * i, "/v1/chat/completions", model, i % 2 == 0,
            "client_closed" if closed else "ok", 499 if closed else 200, 40 + i, 3 if closed else 20 + i, "usage",
            0.05, 1.0 + 0.1 * i, energy_j, 0.9 * energy_j, 1.1 * energy_j, {"cpu": energy_j}, "measured"))
    return rows


def add_traffic(path: Path) -> None:
    """A proxy session's requests and idle energy, written through the proxy's store API."""
    with RequestStore(path) as store:
        store.start_session("sess1", "http://127.0.0.1:8000", "measured", {"sources": ["rapl"]})
        rows = proxy_rows("sess1")
        for row in rows:
            store.add_request(row)
        store.add_idle("sess1", TRAFFIC_START_UNIX + 400.0, IDLE_S, IDLE_J, 0.9 * IDLE_J, 1.1 * IDLE_J, {"cpu": IDLE_J})
        store.end_session("sess1", sum(r.energy_j for r in rows) + IDLE_J, {"cpu": sum(r.energy_j for r in rows) + IDLE_J})


def build_db(path: Path, sweep: bool = True, traffic: bool = True) -> Path:
    """Sentiment runs (two a sweep's variants), chat runs under two reasoning modes and one disturbed,
    a measured H100 chat run (AI Energy Score: comparable), an encoder (none), and proxy requests."""
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
            "interval": {"method": "bootstrap", "n": 4, "j_per_query_low": 3.2, "j_per_query_high": 4.3,
                         "wh_per_1000_queries_low": 3.2 / 3.6, "wh_per_1000_queries_high": 4.3 / 3.6}}
        store.set_status("c-busy", "complete", RunRecord.model_validate(marked))
        store_run(store, SyntheticRun("c-h100", "gpu-model", [2.5] * 6, task="chat", kind="measured",
                                      uncertainty_pct=5.0, gpus=H100, domain="gpu"))
        store_run(store, SyntheticRun("c-enc", "an-encoder", [1.0] * 4, task="chat", backend="encoder"))
        if sweep:
            store.create_sweep("sw1", "threads", {"name": "threads", "task": "sentiment", "baseline": "two"})
            for pos, (variant, energy) in enumerate((("two", 2.0), ("one", 1.5))):
                run_id = f"sw1-{variant}"
                store_run(store, SyntheticRun(run_id, "smollm2", [energy] * 6, seconds=[1.0 + pos] * 6))
                store.set_variant("sw1", pos, variant, {}, "complete", run_id)
    if traffic:
        add_traffic(path)
    return path
