"""Runs written through the store API without a model: for the report's tests and its benchmark.

Each run is stored as ``joulescore run`` stores one (a spec, one row per prompt, then the
record rebuilt from those rows by the record builder), so the report reads exactly what
it reads from a real database.  The per-prompt figures are the caller's: nothing here
pretends to be a measurement, and the meter says ``synthetic`` in its sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from joulescore.store.rows import RowExtra
from joulescore.store.sqlite import ResultRow, Store


@dataclass
class SyntheticRun:
    """One stored run's settings and, per prompt: energy (J), input tokens and seconds."""

    run_id: str
    model: str
    energy_j: Sequence[float]
    task: str = "sentiment"
    backend: str = "llama.cpp"
    kind: str = "estimated"
    uncertainty_pct: float | None = 30.0
    #: fraction of each prompt's energy and time spent before the first token
    prefill_share: float = 0.6
    correct: Sequence[bool] = ()
    input_tokens: Sequence[int] = ()
    seconds: Sequence[float] = ()
    cpu: str = "Intel Xeon (Emerald Rapids)"
    microarchitecture: str = "Emerald Rapids"
    gpus: list[dict[str, Any]] = field(default_factory=list)
    #: the one domain the energy is metered on: cpu, or gpu for a run on an accelerator
    domain: str = "cpu"
    quantization: str = "Q4_1"
    batch_size: int = 1
    reasoning: str | None = None
    notes: list[str] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        metric = "label_accuracy" if self.task == "sentiment" else "length"
        reasoning = {"mode": self.reasoning, "method": "prompted", "family": "none"} if self.reasoning else None
        spec: dict[str, Any] = {
            "model": {"name": self.model, "backend": self.backend, "quantization": self.quantization,
                      "parameters": 134_515_008, "extra": {"size_bytes": 100_000_000}},
            "task": {"name": self.task, "dataset": f"{self.task}.jsonl", "num_prompts": len(self.energy_j),
                     "metric": metric},
            "config": {"protocol": "natural" if reasoning else "energy-score", "batch_size": self.batch_size,
                       "max_new_tokens": 10},
            "hardware": {"cpu": self.cpu, "cpu_microarchitecture": self.microarchitecture, "logical_cpus": 2,
                         "ram_gb": 8.0, "gpus": self.gpus},
            "meter": {"kind": self.kind, "sources": ["synthetic: written by tests/synthetic.py"],
                      "includes": ["cpu", "dram"] if self.domain == "cpu" else [self.domain],
                      "uncertainty_pct": self.uncertainty_pct, "domains": [self.domain], "notes": self.notes},
        }
        if reasoning:
            spec["reasoning"] = reasoning
        return spec

    def rows(self) -> list[ResultRow]:
        out = []
        band = (self.uncertainty_pct or 0.0) / 100
        for i, e in enumerate(self.energy_j):
            seconds = self.seconds[i] if self.seconds else 1.0
            ok = self.correct[i] if self.correct else True
            tokens = self.input_tokens[i] if self.input_tokens else 40 + i
            pre_j, pre_s = e * self.prefill_share, seconds * self.prefill_share
            out.append(ResultRow(
                prompt_index=i, prompt_id=f"p{i}", ok=True, error=None, finish_reason="length",
                input_tokens=tokens, output_tokens=10, prefill_s=pre_s, decode_s=seconds - pre_s,
                prefill_j=pre_j, decode_j=e - pre_j, low_j=e * (1 - band), high_j=e * (1 + band),
                domains={self.domain: e}, text="positive" if ok else "negative",
                extra=RowExtra(reference="positive", ttft_s=pre_s, latency_s=seconds)))
        return out


def store_run(store: Store, run: SyntheticRun) -> None:
    """Store the run's spec and rows, then its record as the record builder computes it from them."""
    store.create_run(run.run_id, len(run.energy_j), run.spec())
    store.add_results(run.run_id, run.rows())
    store.set_status(run.run_id, "complete", store.record(run.run_id))
