"""What a run refuses before anything loads or prints: its task, threads, context window, meter and model file."""

from __future__ import annotations

from pathlib import Path

from joulescore.backends import ENGINES
from joulescore.backends.gguf import context_length
from joulescore.backends.models import check_gguf, resolve_model
from joulescore.errors import BadInput, JoulescoreError
from joulescore.hardware import logical_cpus
from joulescore.meters import select_meter
from joulescore.model.config import RunConfig
from joulescore.model.options import OpenAIOptions
from joulescore.tasks.prompts import load_prompts
from joulescore.tasks.spec import Prompt, TaskSpec, custom_spec, load_spec, task_names


def task_spec(config: RunConfig) -> TaskSpec:
    """The shipped task, or a custom one built from ``--template`` over ``--dataset``."""
    spec = load_spec(config.task)
    if config.template is None:
        if config.metric or config.reference_field:
            raise BadInput("--metric and --reference-field apply to a custom task: give --template too")
        return spec
    if not config.dataset:
        raise BadInput("--template needs --dataset: the JSONL file whose rows fill it")
    return custom_spec(spec, config.template, Path(config.dataset).expanduser(), config.metric,
                       config.reference_field)


def check_threads(config: RunConfig) -> None:
    """More engine threads than CPUs only time-slices them: the run would measure contention, not the model."""
    cpus = logical_cpus()
    if isinstance(config.threads, int) and config.threads > cpus:
        raise BadInput(f"--threads {config.threads} is more than the {cpus} CPUs this process may run on; "
                       f"give at most --threads {cpus}")


def check_context(config: RunConfig, model_context: int | None) -> None:
    """--max-new-tokens must leave room for a prompt in the context window: refused before any prompt runs.

    The window is --n-ctx, or the model's own context where that is smaller.  An encoder writes
    no tokens, and a server's window is the server's own, so neither is checked here.
    """
    if not ENGINES[config.backend].writes_tokens or isinstance(config.engine, OpenAIOptions):
        return
    window, whose = config.n_ctx, "--n-ctx"
    if model_context and model_context < window:
        window, whose = model_context, "the model's"
    if config.max_new_tokens >= window:
        raise BadInput(f"--max-new-tokens {config.max_new_tokens} does not fit the context window of {window} "
                       f"tokens ({whose}), which must hold the prompt too")


def _gguf_context(config: RunConfig) -> int | None:
    """A GGUF model's trained context, from its file's header (llama.cpp): known before the engine loads it."""
    if not ENGINES[config.backend].reads_gguf_header:
        return None
    try:
        path = resolve_model(config.model).path
    except JoulescoreError:
        return None  # loading the model reports it
    return context_length(path)


def check_settings(config: RunConfig) -> None:
    """What can be refused before anything loads or prints: threads, and the window for the new tokens."""
    check_threads(config)
    check_context(config, _gguf_context(config))


def check_inputs(config: RunConfig) -> None:
    """:func:`check_settings`, the task, a meter asked for by name and a llama.cpp model's file: for a command
    that prints before it starts a run (compare-reasoning), so that a bad one is its one line of output."""
    check_settings(config)
    task_spec(config)
    if config.meter != "auto":
        # unknown, or not available here: said now (the meter is not started)
        select_meter(config.meter, options=config.scrape_options())
    if ENGINES[config.backend].reads_gguf_header:
        check_gguf(resolve_model(config.model).path)


def check_backend(spec: TaskSpec, backend: str) -> None:
    """A media task runs only on an engine that reads its files, and a text task never on one."""
    reads = ENGINES[backend].inputs
    if reads != spec.inputs:
        fits = [name for name, e in ENGINES.items() if e.inputs == spec.inputs and e.inputs != "text"]
        what = f"--backend {', '.join(fits)}" if fits else "a text backend (llama.cpp, transformers, ...)"
        raise BadInput(f"task {spec.name!r} gives {spec.inputs} prompts and the {backend} backend reads {reads}: "
                       f"use {what}")


def task_prompts(config: RunConfig) -> tuple[TaskSpec, list[Prompt], Path]:
    """The task, its prompts in the dataset's order and where they came from, checked against the engine:
    all a new run can refuse before its results database is made or its model loads."""
    spec = task_spec(config)
    encoder = ENGINES[config.backend].kind == "encoder"
    if encoder and spec.encoder is None:
        fits = [t for t in task_names() if load_spec(t).encoder is not None]
        raise BadInput(f"task {spec.name!r} needs a generative model; the {config.backend} backend "
                       f"runs only: {', '.join(fits)}")
    check_backend(spec, config.backend)
    dataset = Path(config.dataset).expanduser() if config.dataset else None
    prompts, dataset_path = load_prompts(spec, dataset, for_encoder=encoder)
    return spec, prompts, dataset_path
