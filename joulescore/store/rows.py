"""The stored rows of a run, as the store hands them out: the run itself, and one answered prompt.

A prompt's figures beyond the fixed columns (its own latency in a batch, the batch's window, a media
file's decoding, the reasoning split, the interference figures) are one typed model, ``RowExtra``,
kept in the ``extra_json`` column under the same keys as ever.  Built by the runner it is strict (a
typo fails at once); read back from a database (``RowExtra.load``) it is tolerant, so a row an older
or newer joulescore wrote still loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from joulescore.meters.interference import CpuWindow

#: the validation context key of the tolerant path: a row read back from a database
LOADING = "loading"


class RowPart(BaseModel):
    """Declared keys only when built; unknown keys left out when a stored row is read (``RowExtra.load``).

    Only the keys that were set are written (``RowExtra.as_json``): a key the runner did not fill stays
    absent from the stored JSON, as the dictionaries it replaces left it.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any, info: ValidationInfo) -> Any:
        """When loading, keep just the keys this part declares."""
        if isinstance(data, dict) and info.context and info.context.get(LOADING):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data


class BatchWindow(RowPart):
    """The window a batch's rows shared (bench/runner.py ``run_batch``); the steady figures where it filled."""

    id: int
    size: int
    window_s: float
    #: from the batch's first token to its first finished row: every row decoding (ML.ENERGY's window)
    steady_j: Optional[float] = None
    steady_s: Optional[float] = None
    steady_tokens: Optional[int] = None


class MediaFigures(RowPart):
    """A media prompt's file (bench/media.py): what it was, what was converted, what decoding it cost."""

    file: str = ""
    source: Optional[str] = None
    converted: Optional[str] = None
    audio_s: Optional[float] = None
    #: reading, resampling or resizing the file: part of the row's prefill_j
    preprocessing_j: float = 0.0
    preprocessing_s: float = 0.0


class ReasoningSplit(RowPart):
    """One response's reasoning/answer split, its decode energy divided at the boundary (bench/runner.py)."""

    state: str
    tokens: int
    answer_tokens: int
    tokens_estimated: bool = False
    reasoning_j: float
    answer_j: float
    boundary_s: Optional[float] = None


class WindowFigures(RowPart):
    """What else used the machine in one prompt's window (meters/interference.py ``InterferenceWatch.end``).

    Seconds, never percentages, so windows add up (store/interference.py sums them).
    """

    wall_s: Optional[float] = None
    capacity_s: Optional[float] = None
    own_s: Optional[float] = None
    others_s: Optional[float] = None
    steal_s: Optional[float] = None
    cpu_freq_min_pct: Optional[float] = None
    gpu_throttle: list[str] = []
    gpu_other_pids: list[int] = []
    cpu_throttle_events: int = 0

    def cpu(self) -> CpuWindow:
        """The CPU seconds of a measured window (``capacity_s`` set: the five are stored together)."""
        return CpuWindow(self.wall_s or 0.0, self.capacity_s or 0.0, self.own_s or 0.0, self.others_s or 0.0,
                         self.steal_s or 0.0)

    def scaled(self, share: float) -> WindowFigures:
        """A batch's window figures as one row's share of them (seconds scaled, the rest as is)."""
        seconds = {k: round(getattr(self, k) * share, 6) for k in self.model_fields_set
                   if k.endswith("_s") and getattr(self, k) is not None}
        return self.model_copy(update=seconds)


class RowExtra(RowPart):
    """A prompt's stored figures beyond the fixed columns: each key is set only where the runner fills it."""

    #: the prompt's reference answer, for the metric
    reference: Any = None
    #: input tokens taken from the engine's KV cache (a prefix shared with the previous prompt)
    cached_input_tokens: int = 0
    #: a batch row's own times (its stored durations are shares of the window)
    ttft_s: Optional[float] = None
    latency_s: Optional[float] = None
    batch: Optional[BatchWindow] = None
    #: under a reasoning mode: the answer section the metric sees, and the split
    answer: Optional[str] = None
    reasoning: Optional[ReasoningSplit] = None
    #: a media prompt's file
    media: Optional[MediaFigures] = None
    #: the whole machine's energy in the window (a meter that attributes a share to the run)
    machine_j: Optional[float] = None
    interference: Optional[WindowFigures] = None

    @classmethod
    def load(cls, data: Any) -> RowExtra:
        """The tolerant path, for a stored row's JSON: unknown keys are left out."""
        return cls.model_validate(data if isinstance(data, dict) else {}, context={LOADING: True})

    def as_json(self) -> str:
        """The stored JSON: just the keys that were set, under the names older versions read."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True))


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
    extra: RowExtra = field(default_factory=RowExtra)

    @property
    def energy_j(self) -> float:
        return self.prefill_j + self.decode_j

    @property
    def duration_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def latency_s(self) -> float:
        """The prompt's own wall time; in a batch its stored durations are shares of the window."""
        return self.extra.latency_s if self.extra.latency_s is not None else self.duration_s

    @property
    def ttft_s(self) -> float:
        """Time to first token: a batch row's own, else its prefill time."""
        return self.extra.ttft_s if self.extra.ttft_s is not None else self.prefill_s

    @property
    def scored_text(self) -> str:
        """What the metric sees: under a reasoning mode the answer section only."""
        if self.extra.reasoning is not None and self.extra.answer is not None:
            return self.extra.answer
        return self.text
