"""A complete, valid run record for tests that need one without running a model."""

from __future__ import annotations

import copy
from typing import Any

from joulescore.model.record import RunRecord

_P = {"p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0}
BASE: dict[str, Any] = {
    "run_id": "20260101-000000-abcdef", "status": "complete", "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:01:00+00:00", "tool": {"name": "joulescore", "version": "0.1.0"},
    "model": {"name": "SmolLM2-135M-Instruct", "path": None, "backend": "llama.cpp", "quantization": "Q4_1",
              "parameters": 134_515_008, "extra": {"size_bytes": 100_000_000}},
    "task": {"name": "sentiment", "dataset": "sentiment.jsonl", "num_prompts": 10, "metric": "label_accuracy"},
    "config": {"protocol": "energy-score", "batch_size": 1, "max_new_tokens": 10},
    "hardware": {"cpu": "Intel Xeon (Emerald Rapids)", "cpu_microarchitecture": "Emerald Rapids",
                 "logical_cpus": 2, "ram_gb": 8.0, "gpus": []},
    "meter": {"kind": "estimated", "sources": ["estimator"], "includes": ["cpu", "dram"], "uncertainty_pct": 47},
    "counts": {"prompts": 10, "done": 10, "succeeded": 10, "failed": 0, "input_tokens": 400, "output_tokens": 100,
               "truncated": 10, "output_tokens_per_query": _P},
    "energy": {"total_j": 61.41, "prefill_j": 40.0, "decode_j": 21.41, "low_j": 48.0, "high_j": 90.0,
               "cpu_j": 50.0, "ram_j": 11.41, "per_query_j": _P},
    "phase_split": {"prefill_pct": 65.1, "decode_pct": 34.9},
    "wh_per_1000_queries": 1.706, "j_per_query": 6.141, "j_per_output_token": 0.6141, "duration_s": 10.0,
    "latency": {"ttft_s": _P, "e2e_s": _P, "mean_s": 1.0},
    "batching": {"batch_size": 1, "mode": "sequential"},
    "quality": {"metric": "accuracy", "value": 0.82, "n": 100, "higher_is_better": True},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_record(**overrides: Any) -> RunRecord:
    """``BASE`` with nested overrides, e.g. ``make_record(meter={"kind": "measured"})``."""
    return RunRecord.model_validate(_merge(BASE, overrides))
