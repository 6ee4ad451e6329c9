"""The run record: the product's main output, as one typed model.

``run.json`` and every ``--json`` of a run are this model's serialization; its
JSON Schema is published in ``docs/run-record.schema.json``.  Units are in the
field names.  Sections whose keys come from outside (a model's GGUF metadata,
a meter's per-domain detail) stay open dictionaries inside typed sections.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import ValidationInfo, model_validator

from joulescore.model.sections import (
    BUILDING,
    Hardware,
    InterleaveLink,
    Meter,
    ModelInfo,
    ReasoningApplied,
    Section,
    SweepLink,
    TaskInfo,
    Tool,
)

#: bumped when a field is renamed or its meaning changes; new optional fields do not bump it
SCHEMA_VERSION = 1


class Percentiles(Section):
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    max: Optional[float] = None


class Counts(Section):
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


class Energy(Section):
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
    #: the whole machine, as a wall-socket meter would see it (all idle power, other processes' dynamic power
    #: too), where the meter attributes a share to the run (the estimator); total_j is the run's share
    whole_machine_j: Optional[float] = None
    attribution: Optional[str] = None


class PhaseSplit(Section):
    prefill_pct: Optional[float] = None
    decode_pct: Optional[float] = None


class Latency(Section):
    ttft_s: Percentiles
    e2e_s: Percentiles
    mean_s: Optional[float] = None


class Batching(Section):
    batch_size: int
    mode: str
    attribution: Optional[str] = None


class SteadyState(Section):
    """Figures from the windows in which every row of a batch was decoding (ML.ENERGY's method)."""

    j_per_output_token: Optional[float] = None
    tokens_per_s: Optional[float] = None
    window_s: Optional[float] = None
    energy_j: Optional[float] = None
    output_tokens: int = 0
    batches: int = 0
    kind: Optional[str] = None
    note: str = ""


class Quality(Section):
    metric: str
    value: Optional[float] = None
    n: int
    higher_is_better: Optional[bool] = None
    details: dict[str, Any] = {}
    note: str = ""


class Interference(Section):
    """What else used the machine in the run's measured windows (joulescore/meters/interference.py).

    CPU shares are of the CPUs the run may use; ``others`` is every process outside the run's own tree.
    """

    #: False where nothing could be read (no /proc/stat)
    measured: bool = False
    #: above a threshold: the run is shown but never rated
    disturbed: bool = False
    #: why, in words ("other processes used 48% of the machine's CPU"); None when not disturbed
    reason: Optional[str] = None
    reasons: list[str] = []
    others_cpu_pct: Optional[float] = None
    steal_pct: Optional[float] = None
    own_cpu_pct: Optional[float] = None
    cpus: Optional[int] = None
    #: the thresholds used (RunConfig.disturbed_cpu_pct, disturbed_steal_pct)
    thresholds: dict[str, float] = {}
    #: prompts whose own window was above a threshold, of those measured
    prompts_disturbed: int = 0
    prompts_measured: int = 0
    #: others' share of the CPU while the model loaded, before the first prompt (at least 1 s)
    before_run: Optional[dict[str, Any]] = None
    #: the lowest CPU clock seen, as a share of the hardware maximum (where cpufreq is readable)
    cpu_freq_min_pct: Optional[float] = None
    cpu_freq_readable: Optional[bool] = None
    cpu_throttle_events: Optional[int] = None
    #: NVML clock throttle reasons seen on the metered GPUs
    gpu_throttle_reasons: list[str] = []
    #: other compute processes seen on the metered GPUs during the run
    gpu_other_pids: list[int] = []
    #: ``--threads auto``: the threads chosen and why
    threads: Optional[dict[str, Any]] = None
    notes: list[str] = []


class Interval(Section):
    """The 95% confidence interval of J/query and Wh per 1,000 queries (joulescore/store/interval.py)."""

    level: float = 0.95
    method: str
    #: prompts the interval is computed over
    n: int
    j_per_query_low: float
    j_per_query_high: float
    wh_per_1000_queries_low: float
    wh_per_1000_queries_high: float
    #: half the interval's width as a share of J/query
    half_width_pct: Optional[float] = None
    #: "plain mean", or "regression on uncached_input_tokens" (a sampled run whose engine could count tokens)
    estimator: Optional[str] = None
    #: the figure the interval is around: the prompts' J/query, or a sampled run's estimate of the full run's
    j_per_query: Optional[float] = None
    #: N: the prompts the figure refers to (n, above, were measured)
    prompts: Optional[int] = None
    #: the regression's covariate, its mean over all N prompts and over the n measured, and the fitted slope
    covariate: Optional[str] = None
    covariate_population_mean: Optional[float] = None
    covariate_sample_mean: Optional[float] = None
    slope_j_per_token: Optional[float] = None
    #: how the covariate of every prompt was counted before the run
    covariate_source: Optional[str] = None
    #: what the figure and its interval are of, in words
    refers_to: Optional[str] = None


class Sampling(Section):
    """A ``--precision`` rating: prompts in a shuffled order, stopped once the interval of its estimate of the
    full run's J/query was narrow enough (joulescore/store/estimate.py)."""

    precision_pct: float
    seed: int
    min_prompts: int
    #: prompts answered (stored), and how many the task (after --limit) offered
    prompts_run: int
    prompts_available: int
    #: fewer prompts than the task has: a sampled rating
    sampled: bool
    #: the interval's half-width is within precision_pct of J/query
    reached: bool
    #: "precision reached", "all prompts answered" or "not finished"
    stopped: str
    #: how the full run's J/query was estimated (interval.estimator); j_per_query is that estimate when sampled
    estimator: Optional[str] = None
    #: why a sampled run fell back to the plain mean (its engine could not count tokens before running)
    why_plain: Optional[str] = None
    #: the sampled prompts' own J/query (energy over answers), beside the estimate
    sample_j_per_query: Optional[float] = None


class Media(Section):
    """A run whose prompts are files (audio, image): their decoding, and what was converted (bench/media.py)."""

    inputs: str
    #: what the model takes, e.g. "16000 Hz mono" or "224x224 RGB"
    model_input: Optional[str] = None
    #: reading, resampling or resizing the files: part of energy.prefill_j
    preprocessing_j: float
    preprocessing_s: float
    preprocessing_pct: Optional[float] = None
    #: audio only: the answered clips' length, and their energy per second of audio
    audio_s: Optional[float] = None
    j_per_audio_s: Optional[float] = None
    #: files resampled or resized so the model could take them, and how (at most 10 kinds)
    converted: int = 0
    conversions: list[str] = []
    #: what the files held (sample rates, sizes; at most 10 kinds)
    sources: list[str] = []
    note: str = ""


class RunRecord(Section):
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
    #: the whole machine's figure beside the run's attributed one (energy.whole_machine_j per query)
    whole_machine_wh_per_1000_queries: Optional[float] = None
    #: 95% interval of J/query and Wh per 1,000 queries
    interval: Optional[Interval] = None
    #: only for a --precision run
    sampling: Optional[Sampling] = None
    j_per_output_token: Optional[float] = None
    duration_s: float
    tokens_per_s: Optional[float] = None
    queries_per_s: Optional[float] = None
    latency: Latency
    batching: Batching
    steady_state: Optional[SteadyState] = None
    quality: Quality
    #: only for a task whose prompts are files (asr, image-classification)
    media: Optional[Media] = None
    #: what else used the machine during the run, and whether that disturbed it (None: runs stored before)
    interference: Optional[Interference] = None
    errors: list[str] = []
    #: the sweep this run is a variant of
    sweep: Optional[SweepLink] = None
    #: the run made beside it in alternating blocks, where it was (``compare --interleave``)
    interleave: Optional[InterleaveLink] = None
    #: the run's stars among its stored peers, or why it has none (filled when shown)
    stars: Optional[str] = None
    #: the run on the published AI Energy Score scale: comparable, PROJECTED or none, and why (filled when shown)
    ai_energy_score: Optional[dict[str, Any]] = None
    #: the machine speed probe timed before and after the run (joulescore/bench/probe.py): drift between runs
    probe: Optional[dict[str, Any]] = None
    #: run.json only: each prompt's figures as columns, so a committed baseline compares prompt by prompt
    per_prompt: Optional[dict[str, Any]] = None
    #: where run.json was written
    run_json: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _tolerate_model(cls, data: Any, info: ValidationInfo) -> Any:
        """Unless building, keep just the ``model`` keys ``ModelInfo`` declares (it cannot see the context)."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and not (
                info.context and info.context.get(BUILDING)):
            return {**data, "model": {k: v for k, v in data["model"].items() if k in ModelInfo.model_fields}}
        return data

    @classmethod
    def build(cls, data: dict[str, Any]) -> RunRecord:
        """The strict path, for the record builder: any key no section declares is an error."""
        return cls.model_validate(data, context={BUILDING: True})

    @classmethod
    def load(cls, data: dict[str, Any]) -> RunRecord:
        """The tolerant path, for stored records (a database's, a run.json): unknown keys are left out."""
        return cls.model_validate(data)

    def reasoning_plan(self) -> Optional[ReasoningApplied]:
        """The reasoning plan the run applied, read from its config here only; None for a run without one."""
        plan = self.config.get("reasoning")
        return ReasoningApplied.model_validate(plan) if isinstance(plan, dict) and plan.get("mode") else None

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
