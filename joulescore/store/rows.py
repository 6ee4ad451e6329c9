"""The stored rows of a run, as the store hands them out: the run itself, and one answered prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RunRow:
    run_id: str
    created_at: str
    updated_at: str
    status: str
    num_prompts: int
    pid: int | None
    host: str | None
    spec: dict[str, Any]
    record: dict[str, Any] | None
    #: when the process ``pid`` started (Unix time); None for runs stored before it was kept
    pid_started_s: float | None = None


@dataclass
class ResultRow:
    prompt_index: int
    prompt_id: str
    ok: bool
    error: str | None
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    prefill_s: float
    decode_s: float
    prefill_j: float
    decode_j: float
    low_j: float
    high_j: float
    domains: dict[str, float]
    text: str
    extra: dict[str, Any]

    @property
    def energy_j(self) -> float:
        return self.prefill_j + self.decode_j

    @property
    def duration_s(self) -> float:
        return self.prefill_s + self.decode_s
