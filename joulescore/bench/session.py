"""A rating from start to finish: resolve everything, check it, run, store, report.

Every input is checked before the run is created, so bad input never leaves
a run behind.  ``resume`` rebuilds the same run from its stored settings.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from joulescore import __version__
from joulescore.backends import ENCODER_BACKENDS, load_backend
from joulescore.backends.base import Backend
from joulescore.backends.options import OpenAIOptions
from joulescore.backends.reasoning import ReasoningPlan, detect_family, plan_reasoning
from joulescore.bench.runner import ProgressSink, RunOutcome, run_pending, warm_up
from joulescore.errors import BadInput, StoreError
from joulescore.hardware import hardware_info
from joulescore.meters import select_meter
from joulescore.meters.base import Domain, Meter
from joulescore.meters.estimator import tree_cpu_s
from joulescore.meters.monitor import idle_power_w
from joulescore.model.config import RunConfig
from joulescore.model.record import RunRecord
from joulescore.store.sqlite import Store
from joulescore.tasks.spec import Prompt, TaskSpec, custom_spec, load_prompts, load_spec, task_names

#: (prompts in the run, prompts already stored, the meter's kind) -> a progress sink
ProgressFactory = Callable[[int, int, str], ProgressSink]


@dataclass
class Prepared:
    """Everything a run needs, checked, before anything is stored."""

    config: RunConfig
    spec: TaskSpec
    prompts: list[Prompt]
    dataset_path: Path
    backend: Backend
    meter: Meter
    plan: ReasoningPlan | None = None
    #: "detected" (from the model's metadata and template) or "override" (--reasoning-family)
    family_source: str | None = None


def reasoning_plan(config: RunConfig, backend: Backend) -> tuple[ReasoningPlan | None, str | None]:
    """The reasoning switch for this model, or None when no --reasoning mode was asked for."""
    if config.reasoning is None:
        return None, None
    info = backend.info()
    template = backend.chat_template()
    if config.reasoning_family is not None:
        family, source = config.reasoning_family, "override"
    else:
        family = detect_family(info.extra.get("gguf_name") or info.name, info.architecture, template)
        source = "detected"
    return plan_reasoning(config.reasoning, family, config.max_new_tokens, template), source


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


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


def prepare(config: RunConfig) -> Prepared:
    """Load the task, its prompts, the model and the meter; any problem is a one-line error."""
    spec = task_spec(config)
    encoder = config.backend in ENCODER_BACKENDS
    if encoder and spec.encoder is None:
        fits = [t for t in task_names() if load_spec(t).encoder is not None]
        raise BadInput(f"task {spec.name!r} needs a generative model; the {config.backend} backend "
                       f"runs only: {', '.join(fits)}")
    dataset = Path(config.dataset).expanduser() if config.dataset else None
    prompts, dataset_path = load_prompts(spec, dataset, for_encoder=encoder)
    if config.limit is not None:
        prompts = prompts[: config.limit]
    # A served engine (and vLLM's engine core) is a live child: count its process tree's CPU time, not just ours.
    serving = (isinstance(config.engine, OpenAIOptions) and config.engine.serve) or config.backend == "vllm"
    meter = select_meter(config.meter, cpu_seconds=tree_cpu_s) if serving else select_meter(config.meter)
    backend = load_backend(config.backend, config.model, **config.engine_kwargs())
    try:
        backend.check_task(spec)
    except BadInput:
        backend.close()
        raise
    plan, source = reasoning_plan(config, backend)
    return Prepared(config, spec, prompts, dataset_path, backend, meter, plan, source)


def run_spec(p: Prepared, idle_w: dict[Domain, float] | None = None,
             sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """What is stored with the run: settings, model, task, hardware and meter (with idle power)."""
    provenance = p.meter.provenance().as_dict()
    provenance["notes"] = [*provenance.get("notes", []), *p.backend.notes()]
    provenance["domains"] = [d.value for d in p.meter.read().energy_j]
    sharing = p.meter.sharing()
    if sharing:
        who = ", ".join(f"pid {s['pid']} ({s['name']}) on {s['gpu']}" for s in sharing)
        provenance["notes"].append(f"the GPU is shared: other compute processes ({who}) were running at the start; "
                                   "NVML counts the whole GPU, so their energy is in these figures")
    if idle_w is not None:
        provenance["idle_baseline_s"] = p.config.idle_baseline_s
        provenance["idle_power_w"] = {d.value: round(w, 6) for d, w in idle_w.items()}
    reasoning = None if p.plan is None else {**p.plan.as_dict(), "family_source": p.family_source}
    return {
        "reasoning": reasoning,
        "config": p.config.model_dump(),
        "model": p.backend.info().as_dict(),
        "task": {
            "name": p.spec.name,
            "dataset": str(p.dataset_path) if p.config.dataset else p.spec.dataset,
            "num_prompts": len(p.prompts),
            "metric": p.spec.metric,
            "reference_field": p.spec.reference_field,
            "template": p.config.template,
        },
        "hardware": {**hardware_info(gpus=p.meter.devices()).as_dict(), "other_gpu_processes": sharing},
        "meter": provenance,
        "tool_version": __version__,
        **({"sweep": sweep} if sweep else {}),
    }


def finish(store: Store, run_id: str, out_dir: Path | None) -> RunRecord:
    """Rebuild the record from the stored rows, store it, and write run.json."""
    record = store.record(run_id)
    store.set_status(run_id, record.status, record)
    if out_dir is not None:
        target = out_dir / run_id
        try:
            target.mkdir(parents=True, exist_ok=True)
            (target / "run.json").write_text(json.dumps(record.as_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot write run.json to {target}: {exc.strerror}") from None
        record.run_json = str(target / "run.json")
    return record


def _execute(store: Store, run_id: str, p: Prepared, progress: ProgressFactory | None,
             warmup: int) -> RunOutcome:
    generation = p.config.generation()
    done = store.done_indices(run_id)
    sink = progress(len(p.prompts), len(done), p.meter.provenance().kind) if progress else None
    try:
        warm_up(p.backend, p.prompts, generation, warmup, p.plan, p.config.batch_size)
    except KeyboardInterrupt:
        return RunOutcome(run_id, 0, interrupted=True)
    return run_pending(store, run_id, p.backend, p.meter, p.prompts, generation, sink, plan=p.plan,
                       batch_size=p.config.batch_size)


def start(config: RunConfig, store: Store, out_dir: Path | None,
          progress: ProgressFactory | None = None, sweep: dict[str, Any] | None = None,
          ) -> tuple[RunRecord, RunOutcome]:
    """A new run: prepare, store its settings, answer every prompt, report."""
    p = prepare(config)
    try:
        idle_w = idle_power_w(p.meter, config.idle_baseline_s) if config.idle_baseline_s > 0 else None
        run_id = new_run_id()
        store.create_run(run_id, len(p.prompts), run_spec(p, idle_w, sweep))
        outcome = _execute(store, run_id, p, progress, config.warmup)
    finally:
        p.backend.close()
    return finish(store, run_id, out_dir), outcome


def _pid_alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resume(run_id: str, store: Store, out_dir: Path | None,
           progress: ProgressFactory | None = None) -> tuple[RunRecord, RunOutcome]:
    """Finish a stored run with the settings it was started with; each prompt counts once."""
    run = store.get_run(run_id)
    if run.status == "running" and run.host == os.uname().nodename and _pid_alive(run.pid):
        raise StoreError(f"run {run_id} is still running in process {run.pid}")
    config = RunConfig.model_validate(run.spec["config"])
    p = prepare(config)
    if len(p.prompts) != run.num_prompts:
        raise StoreError(
            f"run {run_id} had {run.num_prompts} prompts but its dataset now gives {len(p.prompts)}"
        )
    store.claim_run(run_id)
    try:
        # Warm up again: this is a fresh process whose caches are cold.
        outcome = _execute(store, run_id, p, progress, config.warmup)
    finally:
        p.backend.close()
    return finish(store, run_id, out_dir), outcome
