"""The settings of a run: the one place where each setting, its default and its validation live.

The command line's ``run`` flags, sweep plans and ``compare-reasoning`` all
build a :class:`RunConfig`.  Engine settings live in the engine's own options
model (``joulescore.model.options``), selected by ``backend``: flat engine
keys (``dtype=...``, as flags and older stored runs give them) are moved into
``engine`` and checked there, so a setting an engine does not take is refused.

Adding a run option: a field here (or on an engine's options), the engine that
uses it, a test and the docs.  The CLI's flags are made from these fields.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from joulescore.errors import BadInput
from joulescore.model.generation import GenerationConfig
from joulescore.model.options import ENGINE_OPTIONS, AnyEngineOptions, LlamaCppOptions
from joulescore.model.reasoning import DEFAULT_BUDGETS, ReasoningFamily, ReasoningMode
from joulescore.model.scrape import ScrapeOptions

Protocol = Literal["energy-score", "natural"]

#: The AI Energy Score protocol: batch 1, greedy, exactly 10 new tokens
#: (optimum-benchmark's energy_star scenario sets min_new_tokens = max_new_tokens)
#: and 10 warm-up prompts that are not counted.
ENERGY_SCORE_NEW_TOKENS = 10
ENERGY_SCORE_WARMUP = 10
#: a --precision rating answers at least this many prompts (joulescore.store.interval.MIN_PROMPTS)
PRECISION_MIN_PROMPTS = 100
#: the most variants a sweep plan may expand to unless ``--max-variants`` says otherwise: a sweep of this
#: many runs already takes days; a larger grid is most likely a typo, and expanding one of 10**6 variants
#: took 35 s, 2.7 GB of memory and a 732 MB database before anything ran (issue 23)
MAX_SWEEP_VARIANTS = 500
#: defaults of the thresholds above which a run is marked disturbed (a run's config carries the ones it used)
DEFAULT_OTHERS_CPU_PCT = 10.0
DEFAULT_STEAL_PCT = 5.0
#: default of how long the machine is watched before a run (while the model loads) to tell whether it is busy
DEFAULT_BUSY_PROBE_S = 1.0


def _flag(name: str, *extra: str) -> dict[str, Any]:
    return {"flags": [name, *extra]}


def _env_number(name: str, default: float, valid: Callable[[float], bool], must_be: str,
                unit: str = "") -> float:
    """A number set once for a machine in ``$name`` (a shared CI box), instead of a flag on every run; unset, the
    default.  A value that is not a number (after an optional ``unit`` sign), or not ``valid``, is a one-line
    error saying what it ``must_be``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.rstrip(unit) if unit else raw)
    except ValueError:
        value = float("nan")
    if not valid(value):
        raise BadInput(f"${name} must be {must_be}, got {raw!r}")
    return value


def _env_pct(name: str, which: Literal["others_cpu", "steal"]) -> float:
    """A disturbance threshold; unset, the interference module's own default (one source for both thresholds)."""
    default = DEFAULT_OTHERS_CPU_PCT if which == "others_cpu" else DEFAULT_STEAL_PCT
    return _env_number(name, default, lambda v: 0.0 <= v <= 100.0, "a percentage between 0 and 100", unit="%")


def _env_seconds(name: str, default: float) -> float:
    """A duration (``$JOULESCORE_BUSY_PROBE_S``): a number of seconds above 0."""
    return _env_number(name, default, lambda v: 0.0 < v < float("inf"), "a number of seconds above 0")


class RunConfig(BaseModel):
    """The settings of one run, stored with it so that ``--resume`` repeats them exactly."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    model: str = Field("smollm2-135m", description="GGUF file or alias (smollm2-135m, gemma3-270m); transformers, "
                       "onnxruntime and encoder also take a model folder or a hub id org/name[@revision]")
    task: str = Field("chat", description="task name (see `joulescore tasks`)")
    dataset: Optional[str] = Field(None, description="your own JSONL prompt set instead of the task's")
    #: a custom task: the user message template (with --dataset), its metric and reference field
    template: Optional[str] = Field(
        None, description="custom task: the user message, with {field}s from each --dataset row")
    metric: Optional[str] = Field(None, description="custom task: how to score it (default: length)")
    reference_field: Optional[str] = Field(None, description="custom task: the row field holding the answer")
    limit: Optional[int] = Field(None, ge=1, description="only the first N prompts")
    protocol: Protocol = Field("energy-score", description="energy-score (fixed 10 new tokens) or natural "
                               "(until EOS; the default with --reasoning)")
    max_new_tokens: int = Field(ENERGY_SCORE_NEW_TOKENS, ge=1,
                                description="new tokens (energy-score) or the cap (natural)")
    warmup: int = Field(ENERGY_SCORE_WARMUP, ge=0, description="uncounted warm-up prompts")
    backend: str = Field("llama.cpp", description="inference engine (encoder: embedding/classifier models)")
    meter: str = Field("auto", description="energy source: auto picks the best one here")
    #: a scraped meter's source (docs/kubernetes.md): stored with the run so that --resume reads the same counters
    prometheus_url: Optional[str] = Field(None, description="--meter prometheus: the Prometheus server's URL")
    exporter_url: Optional[str] = Field(None, description="--meter exporter: the exporter's /metrics URL")
    preset: Optional[str] = Field(None, description="scraped counters: dcgm, kepler-pod, kepler-node or node-rapl")
    query: Optional[str] = Field(None, description="scraped counters: your own counter selector instead of a preset")
    selector: Optional[str] = Field(None, description="narrow a preset to the workload, e.g. pod=\"vllm-0\"")
    unit: Optional[str] = Field(None, description="the counter's unit: J, mJ or uJ (default: the preset's, else J)")
    split_phases: bool = Field(False, description="split prefill/decode energy even where the meter's samples "
                               "are coarser than the phases (then interpolated)")
    threads: Optional[Union[Literal["auto"], int]] = Field(
        None, description="CPU threads for the engine (default: all allowed); auto: only the CPUs other "
        "processes do not hold at the start")
    n_ctx: int = Field(4096, ge=128, description="context window in tokens")
    seed: int = Field(0, description="random seed")
    temperature: float = Field(0.0, ge=0.0, description="sampling temperature (0: greedy)")
    #: seconds of idle power measured before the run; 0: none, nothing subtracted
    idle_baseline_s: float = Field(0.0, ge=0.0, description="measure idle power for SECONDS first; report net "
                                   "energy too", json_schema_extra=_flag("--idle-baseline"))
    #: None: the model as it comes, no switch applied and no split (the default)
    reasoning: Optional[ReasoningMode] = Field(
        None, description="off, on, low, medium or high: the model family's own switch, else prompted "
        "(docs/reasoning.md)")
    #: override the family detected from the model's metadata and chat template
    reasoning_family: Optional[ReasoningFamily] = Field(
        None, description="override the detected family: qwen3, deepseek-r1, smollm3, gpt-oss, none")
    batch_size: int = Field(1, ge=1, description="prompts per batch (openai: requests in flight)",
                            json_schema_extra=_flag("--batch-size", "--concurrency"))
    #: a sampled rating: shuffled prompts (fixed seed), stopped once the 95% interval is this narrow
    precision: Optional[float] = Field(
        None, description="stop once the 95% interval of J/query is within this share of it, e.g. 2%: "
        "prompts in a shuffled order (fixed seed), at least 100 of them",
        json_schema_extra={"text": True})
    #: above either, the run is marked disturbed (and not rated)
    disturbed_cpu_pct: float = Field(default_factory=lambda: _env_pct("JOULESCORE_DISTURBED_CPU_PCT", "others_cpu"),
                                     ge=0.0, le=100.0, description="mark the run disturbed when other "
                                     "processes use more than this % of the machine's CPU "
                                     "(default 10, or $JOULESCORE_DISTURBED_CPU_PCT)")
    disturbed_steal_pct: float = Field(default_factory=lambda: _env_pct("JOULESCORE_DISTURBED_STEAL_PCT", "steal"),
                                       ge=0.0, le=100.0, description="mark the run disturbed when steal "
                                       "time is above this % (VMs; default 5, or $JOULESCORE_DISTURBED_STEAL_PCT)")
    #: the watch before the run (at least this long, counting the model's load) for ``interference.before_run``
    busy_probe_s: float = Field(default_factory=lambda: _env_seconds("JOULESCORE_BUSY_PROBE_S", DEFAULT_BUSY_PROBE_S),
                                gt=0.0, description="watch the machine for at least SECONDS before the run (while "
                                "the model loads) to tell whether it is already busy "
                                "(default 1, or $JOULESCORE_BUSY_PROBE_S)")
    #: the engine's own settings, by ``backend`` (see joulescore.model.options)
    engine: AnyEngineOptions = Field(default_factory=LlamaCppOptions)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Flat engine keys into ``engine``; the protocol and token budget that follow from the rest."""
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if v is not None or k in ("limit",)}
        from joulescore.tasks.media import config_defaults

        data = config_defaults(data)  # a media task's engine and model, unless given
        backend = data.get("backend", "llama.cpp")
        options = ENGINE_OPTIONS.get(backend) if isinstance(backend, str) else None
        engine = dict(data.pop("engine", None) or {})
        for name in engine_option_names():
            if name in data and name not in cls.model_fields:
                engine[name] = data.pop(name)
        if options is not None:
            # Runs stored by 0.1.0 carry every engine's settings at their defaults: those are not a choice.
            engine = {k: v for k, v in engine.items() if k in options.model_fields or not _is_default(k, v)}
            wrong = [k for k in engine if k not in options.model_fields]
            if wrong:
                hint = options.refusal_hint if wrong[0] in ("dtype", "quantization") else ""
                raise ValueError(f"backend {backend} does not take {flag_of(wrong[0])}{hint}")
            engine["backend"] = backend
        data["engine"] = engine
        reasoning = data.get("reasoning")
        if reasoning is not None and data.get("protocol") == "energy-score":
            raise ValueError("--reasoning needs --protocol natural: a fixed 10 new tokens cannot hold a "
                             "reasoning trace")
        data.setdefault("protocol", "natural" if reasoning is not None else "energy-score")
        if "max_new_tokens" not in data:
            if reasoning in DEFAULT_BUDGETS:
                data["max_new_tokens"] = DEFAULT_BUDGETS[reasoning]
            elif data["protocol"] == "natural":
                from joulescore.tasks.spec import load_spec

                data["max_new_tokens"] = load_spec(str(data.get("task", "chat"))).natural_max_new_tokens
        return data

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        """A whole number of CPUs, at least 1, or ``auto``."""
        if value is None or value == "auto":
            return value
        try:
            n = int(value) if not isinstance(value, (bool, float)) else None
        except (TypeError, ValueError):
            n = None
        if n is None:
            raise ValueError(f"takes a whole number of CPUs (at least 1) or auto, got {value!r}")
        if n < 1:  # worded as every other bound ("--threads must be at least 1, got 0")
            raise PydanticCustomError("greater_than_equal", "Input should be greater than or equal to {ge}", {"ge": 1})
        return n

    @field_validator("precision", mode="before")
    @classmethod
    def _percentage(cls, value: Any) -> Any:
        """``2%``, ``2`` or ``0.5%``: a percentage strictly between 0 and 100."""
        if value is None:
            return None
        text = str(value).strip()
        bad = f"must be a percentage between 0 and 100, such as 2%, got {value!r}"
        if isinstance(value, bool):
            raise ValueError(bad)
        try:
            pct = float(text[:-1] if text.endswith("%") else text)
        except ValueError:
            raise ValueError(bad) from None
        if not 0 < pct < 100:  # NaN fails this too
            raise ValueError(bad)
        return pct

    @model_validator(mode="after")
    def _precision_needs_prompts(self) -> RunConfig:
        if self.precision is not None and self.limit is not None and self.limit < PRECISION_MIN_PROMPTS:
            raise ValueError(f"--limit {self.limit} is below the {PRECISION_MIN_PROMPTS} prompts a --precision "
                             f"rating answers at least; give --limit {PRECISION_MIN_PROMPTS} or more")
        return self

    @field_validator("model", "task", "dataset", "template", "metric", "reference_field", "meter")
    @classmethod
    def _text(cls, value: Optional[str]) -> Optional[str]:
        """Text that UTF-8 can store: a name with undecodable bytes (a lone surrogate) cannot be recorded."""
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("holds bytes that are not UTF-8 text; rename it, or give it as a UTF-8 path") from None
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in ENGINE_OPTIONS:
            raise ValueError(f"unknown backend {value!r}; choose one of: {', '.join(ENGINE_OPTIONS)}")
        return value

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> RunConfig:
        """A stored run's settings, whichever joulescore wrote them: never refused, so an old run stays readable.

        Keys this version does not know are left out; a run stored before the disturbance thresholds (and the
        busy watch) were kept gets the defaults (not this machine's ``$JOULESCORE_DISTURBED_*``: the record builder always judged such
        runs by the defaults); a setting that no longer validates (an option since renamed, a bound since
        tightened) falls back to its default.  ``--resume`` validates strictly instead: it runs them again.
        """
        known = {*cls.model_fields, *engine_option_names()}
        given = {k: v for k, v in data.items() if k in known}
        while True:
            try:
                return cls.model_validate({**_STORED_THRESHOLDS, **given})
            except ValidationError as exc:
                failing = _failing(given, exc)
                if not failing:
                    raise
                given = {k: v for k, v in given.items() if k not in failing}

    def scrape_options(self) -> ScrapeOptions:
        """The scraped meters' flags, as ``select_meter`` takes them."""
        return ScrapeOptions(self.prometheus_url, self.exporter_url, self.preset, self.query, self.selector, self.unit)

    def generation(self) -> GenerationConfig:
        """Decoding settings: a fixed length under energy-score, free until EOS otherwise."""
        fixed = self.protocol == "energy-score"
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.max_new_tokens if fixed else 0,
            temperature=self.temperature,
            seed=self.seed,
        )

    def engine_kwargs(self) -> dict[str, Any]:
        """What the engine's constructor takes: the common settings and its own options."""
        own = self.engine.model_dump(exclude={"backend"})
        if "request_timeout_s" in own:  # the HTTP engine's name for it
            own["timeout_s"] = own.pop("request_timeout_s")
        return {"threads": self.threads, "n_ctx": self.n_ctx, "seed": self.seed, **own}


#: what a stored run without the thresholds was judged by, and watched for (``RunConfig.load``)
_STORED_THRESHOLDS = {"disturbed_cpu_pct": DEFAULT_OTHERS_CPU_PCT, "disturbed_steal_pct": DEFAULT_STEAL_PCT,
                      "busy_probe_s": DEFAULT_BUSY_PROBE_S}
#: what a check across settings (no one field named) may be failing on, the least telling first
_CROSS_CHECKED = ("engine", "protocol", "reasoning", "limit", "precision")


def _failing(given: dict[str, Any], error: ValidationError) -> set[str]:
    """The stored settings ``error`` is about: the fields it names, else (a check across settings) the first of
    :data:`_CROSS_CHECKED` still given, else all of them.  An engine option stands for all of the engine's."""
    engine = {"engine", *engine_option_names()}
    named = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
    if not named:
        named = next(({k} for k in _CROSS_CHECKED if (engine if k == "engine" else {k}) & set(given)), set(given))
    if named & engine:
        named |= engine
    return named & set(given)


def _is_default(name: str, value: Any) -> bool:
    """Whether an engine option holds the default of the engine that defines it."""
    for options in ENGINE_OPTIONS.values():
        info = options.model_fields.get(name)
        if info is not None:
            return bool(value == info.get_default(call_default_factory=True))
    return False


def engine_option_names() -> list[str]:
    """Every engine option's name, in a stable order (one flag each on the command line)."""
    return list(_engine_option_names())


@cache
def _engine_option_names() -> tuple[str, ...]:
    """Read once: every stored run's settings are checked against them (``RunConfig.load``)."""
    names: list[str] = []
    for options in ENGINE_OPTIONS.values():
        names.extend(n for n in options.model_fields if n not in names and n != "backend")
    return tuple(names)


def flag_of(field: str) -> str:
    """The command-line flag of a run setting or engine option."""
    models: list[type[BaseModel]] = [RunConfig, *ENGINE_OPTIONS.values()]
    for model in models:
        info = model.model_fields.get(field)
        extra = info.json_schema_extra if info is not None else None
        if isinstance(extra, dict):
            flags = extra.get("flags") or [extra.get("flag")]
            if isinstance(flags, list) and flags[0]:
                return str(flags[0])
    return "--" + field.replace("_", "-")


#: what a field's value is called in "unknown X 'y'" errors, where it is not the field's own name
_NOUNS = {"reasoning": "reasoning mode", "reasoning_family": "reasoning family"}


def describe_error(error: Any, flags: bool = True) -> str:
    """One pydantic error as a sentence a user can act on, naming the flag (or the plan key)."""
    loc = [str(x) for x in error.get("loc", ()) if not isinstance(x, int)]
    field = loc[-1] if loc else ""
    where = (flag_of(field) if flags else ".".join(loc)) if field else ""
    got = error.get("input")
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        text = str(ctx["error"])
        return f"{where}: {text}" if where else text
    if kind == "literal_error":
        noun = _NOUNS.get(field, field.replace("_", " "))
        choices = ", ".join(str(c).strip("'") for c in str(ctx.get("expected", "")).replace(" or ", ", ").split(", "))
        return f"unknown {noun} {got!r}; choose one of: {choices}" + (f" ({where})" if not flags else "")
    if kind in ("greater_than_equal", "greater_than") and flags:
        bound = ctx.get("ge", ctx.get("gt"))
        word = "at least" if kind == "greater_than_equal" else "more than"
        return f"{where} must be {word} {bound}, got {got!r}"
    shown = "" if isinstance(got, (dict, list)) or got is None else f", got {got!r}"
    return f"{'invalid value for ' + where if where else 'invalid settings'}: {error['msg']}{shown}"
