"""The run record: the product's main output, as one typed model.

``run.json`` and every ``--json`` of a run are this model's serialization; its
JSON Schema is published in ``docs/run-record.schema.json``.  Units are in the
field names.  Sections whose keys come from outside (a model's GGUF metadata,
a meter's per-domain detail) stay open dictionaries inside typed sections.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

#: bumped when a field is renamed or its meaning changes; new optional fields do not bump it
SCHEMA_VERSION = 1


class _Section(BaseModel):
    """Typed, but keeps keys an older or newer joulescore wrote, so old records still load."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Tool(_Section):
    name: str = "joulescore"
    version: str


class ModelInfo(_Section):
    name: str
    path: Optional[str] = None
    backend: str
    quantization: Optional[str] = None
    parameters: Optional[int] = None
    architecture: Optional[str] = None
    context_length: Optional[int] = None
    #: engine-specific facts: GGUF name, size_bytes, batching mode, device...
    extra: dict[str, Any] = {}


class TaskInfo(_Section):
    name: str
    dataset: str = ""
    num_prompts: int = 0
    metric: str
    reference_field: Optional[str] = None
    template: Optional[str] = None


class Hardware(_Section):
    cpu: str = "unknown CPU"
    cpu_microarchitecture: Optional[str] = None
    logical_cpus: int = 0
    ram_gb: float = 0.0
    #: each GPU the meter covers: name, UUID, memory, power limit, driver
    gpus: list[dict[str, Any]] = []
    #: compute processes of others seen on those GPUs at the start (their energy is in the GPU's counter)
    other_gpu_processes: list[dict[str, Any]] = []
    os: str = ""
    machine: str = ""


class Meter(_Section):
    #: measured, estimated or mixed (per domain in per_domain)
    kind: str
    sources: list[str] = []
    includes: list[str] = []
    #: the meter's stated uncertainty (None where it states none)
    uncertainty_pct: Optional[float] = None
    notes: list[str] = []
    per_domain: Optional[dict[str, dict[str, Any]]] = None
    #: the domains the figures cover (cpu, dram, gpu, system): energy.*_j is null for the others
    domains: list[str] = []
    #: only with --idle-baseline
    idle_baseline_s: Optional[float] = None
    idle_power_w: Optional[dict[str, float]] = None


class Percentiles(_Section):
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    max: Optional[float] = None


class Counts(_Section):
    prompts: int
    done: int
    succeeded: int
    failed: int
    input_tokens: int
    #: of those, taken from the engine's KV cache (a prefix shared with the previous prompt)
    cached_input_tokens: int = 0
    output_tokens: int
    truncated: int
    output_tokens_per_query: Percentiles
    reasoning_tokens: Optional[int] = None
    answer_tokens: Optional[int] = None
    reasoning_truncated: Optional[int] = None
    reasoning_unclosed: Optional[int] = None
    reasoning_unmarked: Optional[int] = None
    reasoning_tokens_per_query: Optional[Percentiles] = None


class Energy(_Section):
    total_j: float
    #: None where the meter does not cover that domain: never silently mixed
    cpu_j: Optional[float] = None
    ram_j: Optional[float] = None
    gpu_j: Optional[float] = None
    system_j: Optional[float] = None
    prefill_j: float
    decode_j: float
    reasoning_j: Optional[float] = None
    answer_j: Optional[float] = None
    #: the meter's band (equal to total_j for a measured counter)
    low_j: float
    high_j: float
    per_query_j: Percentiles
    #: only with --idle-baseline: gross and net both reported
    gross_total_j: Optional[float] = None
    idle_power_w: Optional[float] = None
    idle_j: Optional[float] = None
    net_total_j: Optional[float] = None
    net_note: Optional[str] = None


class PhaseSplit(_Section):
    prefill_pct: Optional[float] = None
    decode_pct: Optional[float] = None


class Latency(_Section):
    ttft_s: Percentiles
    e2e_s: Percentiles
    mean_s: Optional[float] = None


class Batching(_Section):
    batch_size: int
    mode: str
    attribution: Optional[str] = None


class SteadyState(_Section):
    """Figures from the windows in which every row of a batch was decoding (ML.ENERGY's method)."""

    j_per_output_token: Optional[float] = None
    tokens_per_s: Optional[float] = None
    window_s: Optional[float] = None
    energy_j: Optional[float] = None
    output_tokens: int = 0
    batches: int = 0
    kind: Optional[str] = None
    note: str = ""


class Quality(_Section):
    metric: str
    value: Optional[float] = None
    n: int
    higher_is_better: Optional[bool] = None
    details: dict[str, Any] = {}
    note: str = ""


class SweepLink(_Section):
    id: str
    variant: str


class RunRecord(_Section):
    """Every figure of one run, rebuilt from its stored rows."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    #: running, partial, complete or failed
    status: str
    tool: Tool
    created_at: str
    updated_at: str
    model: ModelInfo
    task: TaskInfo
    #: the run's settings (RunConfig), with ``reasoning`` the plan that was applied
    config: dict[str, Any]
    hardware: Hardware
    meter: Meter
    counts: Counts
    energy: Energy
    phase_split: PhaseSplit
    wh_per_1000_queries: Optional[float] = None
    j_per_query: Optional[float] = None
    #: the GPU-only figure, as AI Energy Score publishes it (None where no GPU was metered)
    gpu_wh_per_1000_queries: Optional[float] = None
    j_per_output_token: Optional[float] = None
    duration_s: float
    tokens_per_s: Optional[float] = None
    queries_per_s: Optional[float] = None
    latency: Latency
    batching: Batching
    steady_state: Optional[SteadyState] = None
    quality: Quality
    errors: list[str] = []
    #: the sweep this run is a variant of
    sweep: Optional[SweepLink] = None
    #: the run's stars among its stored peers, or why it has none (filled when shown)
    stars: Optional[str] = None
    #: the run on the published AI Energy Score scale: comparable, PROJECTED or none, and why (filled when shown)
    ai_energy_score: Optional[dict[str, Any]] = None
    #: where run.json was written
    run_json: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        """The record as plain JSON types (what run.json and --json print)."""
        return self.model_dump(mode="json")


def record_schema() -> dict[str, Any]:
    """The JSON Schema of the record, as published in docs/run-record.schema.json."""
    return RunRecord.model_json_schema(mode="serialization")


if __name__ == "__main__":  # regenerate the published schema: python -m joulescore.model.record
    import json
    from pathlib import Path

    target = Path(__file__).resolve().parents[2] / "docs" / "run-record.schema.json"
    target.write_text(json.dumps(record_schema(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target}")
