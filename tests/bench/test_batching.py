"""Batch attribution and steady state, on a scripted engine and meter (no model needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from joulescore.backends.base import Backend, Generation
from joulescore.bench.runner import run_pending
from joulescore.meters.base import Domain, Meter, Provenance, Reading
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo
from joulescore.store.record import build_record
from joulescore.store.sqlite import Store
from joulescore.tasks.spec import Prompt


class StepMeter(Meter):
    """Every read advances time by 1 s and energy by 10 J (7 cpu + 3 dram)."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def read(self) -> Reading:
        t = float(next(self.ticks))
        energy = {Domain.CPU: 7.0 * t, Domain.DRAM: 3.0 * t}
        return Reading(t, energy, energy, energy)

    def provenance(self) -> Provenance:
        return Provenance("estimated", ("test",), ("cpu", "dram"), 0.0)


class Scripted(Backend):
    """Answers row i with i+1 tokens; reports the batch full, then its first row ending."""

    name = "scripted"
    batching = "static"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def info(self) -> ModelInfo:
        return ModelInfo("scripted", None, self.name, None, extra={"batching": self.batching})

    def generate(self, messages, config, on_first_token=None):  # type: ignore[no-untyped-def]
        return self.generate_batch([messages], config, on_first_token)[0]

    def generate_batch(self, batch, config, on_first_token=None, on_steady_end=None):  # type: ignore[no-untyped-def]
        self.calls.append(len(batch))
        if on_first_token:
            on_first_token()
        if on_steady_end:
            on_steady_end(len(batch))
        return [Generation("x" * (i + 1), 10 * (i + 1), i + 1, 0.1, 0.2, "length") for i in range(len(batch))]


def _prompts(n: int) -> list[Prompt]:
    return [Prompt(i, f"p{i}", [{"role": "user", "content": str(i)}]) for i in range(n)]


def test_batch_window_is_split_by_tokens_and_adds_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    backend, meter = Scripted(), StepMeter()
    spec = {"config": {"batch_size": 3}, "model": backend.info().as_dict(), "task": {"name": "chat", "metric": "length"},
            "hardware": {}, "meter": {"kind": "estimated", "domains": ["cpu", "dram"]}}
    store.create_run("r", 7, spec)
    run_pending(store, "r", backend, meter, _prompts(7), GenerationConfig(5), batch_size=3)
    assert backend.calls == [3, 3, 1]
    rows = store.results("r")
    assert [r.prompt_index for r in rows] == list(range(7))
    # each batch: reads at begin, first, steady, end = 4 ticks = 30 J (10 prefill, 20 decode)
    first_batch = rows[:3]
    assert sum(r.energy_j for r in first_batch) == pytest.approx(30.0)
    assert [r.prefill_j for r in first_batch] == pytest.approx([10 * 10 / 60, 10 * 20 / 60, 10 * 30 / 60])
    assert [r.decode_j for r in first_batch] == pytest.approx([20 * 1 / 6, 20 * 2 / 6, 20 * 3 / 6])
    record = build_record(store.get_run("r"), rows, "test").as_json()
    assert record["energy"]["total_j"] == pytest.approx(90.0)
    assert record["energy"]["cpu_j"] + record["energy"]["ram_j"] == pytest.approx(90.0)
    assert record["duration_s"] == pytest.approx(9.0)  # window time, not the sum of per-row latencies
    steady = record["steady_state"]
    assert steady["batches"] == 3 and steady["window_s"] == pytest.approx(3.0)
    assert steady["output_tokens"] == 3 + 3 + 1
    assert steady["j_per_output_token"] == pytest.approx(30.0 / 7)
    assert record["latency"]["e2e_s"]["p90"] == pytest.approx(0.3)


def test_resume_after_partial_batches_counts_each_prompt_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    spec = {"config": {"batch_size": 2}, "model": {"name": "m", "backend": "fake"},
            "task": {"name": "chat", "metric": "length"}, "hardware": {},
            "meter": {"kind": "estimated"}}
    store.create_run("r", 5, spec)
    run_pending(store, "r", Scripted(), StepMeter(), _prompts(5)[:2], GenerationConfig(5), batch_size=2)
    again = Scripted()
    run_pending(store, "r", again, StepMeter(), _prompts(5), GenerationConfig(5), batch_size=2)
    assert again.calls == [2, 1]
    assert sorted(store.done_indices("r")) == [0, 1, 2, 3, 4]
