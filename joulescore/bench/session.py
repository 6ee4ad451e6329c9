"""A rating from start to finish: resolve everything, check it, run, store, report.

Every input is checked before the run is created, so bad input never leaves
a run behind.  ``resume`` rebuilds the same run from its stored settings, on
the same prompts (checked by their fingerprint), and answers again the
prompts that failed.

Ctrl-C (or SIGTERM) stops a run once: what finished is stored and the run is
marked partial; further Ctrl-Cs while that happens are ignored, so a run is
never left marked "running" by a quick double Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from joulescore import __version__
from joulescore.backends import ENGINES, load_backend
from joulescore.backends.base import Backend
from joulescore.bench.checks import check_context, check_settings, task_prompts
from joulescore.bench.compare_data import per_prompt_section
from joulescore.bench.population import population_of
from joulescore.bench.probe import probe_after, probe_before
from joulescore.bench.runner import ProgressSink, RunOutcome, run_pending, warm_up
from joulescore.bench.stopping import Stop, stopping
from joulescore.errors import BadInput, DatasetError, JoulescoreError, StoreError
from joulescore.hardware import hardware_info, logical_cpus
from joulescore.meters import select_meter
from joulescore.meters.base import Domain, Meter
from joulescore.meters.estimator import own_cpu_s, tree_cpu_s
from joulescore.meters.interference import BusyProbe, BusyProbeClock, InterferenceWatch, free_threads
from joulescore.meters.monitor import idle_power_w
from joulescore.model.config import RunConfig
from joulescore.model.options import OpenAIOptions
from joulescore.model.reasoning import ReasoningPlan, detect_family, plan_reasoning
from joulescore.model.record import RunRecord
from joulescore.model.spec import RunSpec
from joulescore.outputs import check_output, database_files, json_with
from joulescore.store.estimate import Population, row_x
from joulescore.store.interference import busy_warning, start_facts
from joulescore.store.interval import PrecisionStop, shuffled
from joulescore.store.record import owner_alive
from joulescore.store.sqlite import RunRow, Store
from joulescore.tasks.media import materialise
from joulescore.tasks.spec import Prompt, TaskSpec

#: (prompts in the run, prompts already stored, the meter's kind) -> a progress sink
ProgressFactory = Callable[[int, int, str], ProgressSink]
#: where a run's warnings go as they arise (the CLI prints them on stderr)
Notify = Callable[[str], None]


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
    #: the run's process-tree CPU time (what the estimator and the interference watch count as the run's own)
    cpu_seconds: Callable[[], float] = own_cpu_s
    #: what the machine was doing at the start, stored as ``RunSpec.interference``
    interference: dict[str, Any] | None = None
    #: the machine was already busy while the model loaded: said once the run is sure to start
    busy_warning: str | None = None
    #: a --precision run: the covariate's mean over every prompt (None: the plain mean, and ``why``)
    population: Population | None = None
    why_plain: str = ""


def reasoning_plan(config: RunConfig, backend: Backend) -> tuple[ReasoningPlan | None, str | None]:
    """The reasoning switch for this model, or None when no --reasoning mode was asked for."""
    if config.reasoning is None:
        return None, None
    info = backend.info()
    template = backend.chat_template()
    family: str
    if config.reasoning_family is not None:
        family, source = config.reasoning_family, "override"
    else:
        family = detect_family(info.extra.get("gguf_name") or info.name, info.architecture, template)
        source = "detected"
    return plan_reasoning(config.reasoning, family, config.max_new_tokens, template), source


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def prepare(config: RunConfig) -> Prepared:
    """Load the task, its prompts, the model and the meter; any problem is a one-line error.

    Also looks at how busy the machine is while the model loads (at least ``--busy-probe-s``, default 1 s): ``busy_warning``
    says so when it is, and ``--threads auto`` leaves the cores others hold to them.
    """
    check_settings(config)
    spec, prompts, dataset_path = task_prompts(config)
    engine = ENGINES[config.backend]
    dataset = Path(config.dataset).expanduser() if config.dataset else None
    if config.precision is not None:
        prompts = shuffled(prompts, config.seed)  # the sampled order: --resume repeats it
    if config.limit is not None:
        prompts = prompts[: config.limit]
    materialise(spec, prompts, dataset)  # the shipped speech clips this run needs, made once into the cache
    # A served engine (and vLLM's engine core) is a live child: count its process tree's CPU time, not just ours.
    serving = (isinstance(config.engine, OpenAIOptions) and config.engine.serve) or engine.runs_a_child_process
    # An engine behind --endpoint runs outside our tree: its CPU time would count as others'.
    attributable = not (isinstance(config.engine, OpenAIOptions) and not config.engine.serve)
    cpu_seconds: Callable[[], float] = tree_cpu_s if serving else own_cpu_s
    meter = select_meter(config.meter, cpu_seconds=cpu_seconds, attribute=attributable,
                         options=config.scrape_options())
    probe_clock = BusyProbeClock(cpu_seconds)
    kwargs = config.engine_kwargs()
    threads = None
    probe: BusyProbe | None = None
    if config.threads == "auto":
        probe = probe_clock.read(config.busy_probe_s)
        kwargs["threads"], why = free_threads(probe, logical_cpus())
        threads = {"requested": "auto", "threads": kwargs["threads"], "reason": why}
    backend = load_backend(config.backend, config.model, **kwargs)
    try:
        backend.check_task(spec)
        check_context(config, backend.info().context_length)
        if probe is None:
            probe = probe_clock.read(config.busy_probe_s)
    except (BadInput, KeyboardInterrupt):
        backend.close()
        raise
    plan, source = reasoning_plan(config, backend)
    facts = start_facts(probe_clock.cpus, probe, attributable, threads)
    population, why = (population_of(backend, prompts, config.generation(), plan, config.warmup)
                       if config.precision is not None else (None, ""))
    return Prepared(config, spec, prompts, dataset_path, backend, meter, plan, source, cpu_seconds, facts,
                    busy_warning(probe, config.disturbed_cpu_pct, attributable), population, why)


def run_spec(p: Prepared, idle_w: dict[Domain, float] | None = None,
             sweep: dict[str, Any] | None = None) -> RunSpec:
    """What is stored with the run: settings, model, task, hardware and meter (with idle power)."""
    provenance: dict[str, Any] = p.meter.provenance().as_dict()
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
    return RunSpec.build({
        "reasoning": reasoning,
        "config": p.config,
        "model": p.backend.info().as_dict(),
        "task": {
            "name": p.spec.name,
            "dataset": str(p.dataset_path) if p.config.dataset else p.spec.dataset,
            "num_prompts": len(p.prompts),
            "metric": p.spec.metric,
            "reference_field": p.spec.reference_field,
            "template": p.config.template,
            "inputs": p.spec.inputs,
            "prompts_sha256": prompts_sha256(p.prompts),
        },
        "hardware": {**hardware_info(gpus=p.meter.devices()).as_dict(), "other_gpu_processes": sharing},
        "meter": provenance,
        "interference": p.interference,
        "tool_version": __version__,
        **({"sweep": sweep} if sweep else {}),
        **({"population": {**(p.population.as_dict() if p.population else {}), "why_plain": p.why_plain or None}}
           if p.config.precision is not None else {}),
    })


def finish(store: Store, run_id: str, out_dir: Path | None) -> RunRecord:
    """Rebuild the record from the stored rows, store it, and write run.json."""
    record = store.record(run_id)
    store.set_status(run_id, record.status, record)
    if out_dir is not None:
        target = out_dir / run_id
        check_output(target / "run.json", what=f"run.json of run {run_id}", is_own=json_with(run_id=run_id),
                     reads=database_files(store.path), option="", force_hint="move it away")
        try:
            target.mkdir(parents=True, exist_ok=True)
            data = {**record.as_json(), "per_prompt": per_prompt_section(record.task.metric, store.results(run_id))}
            (target / "run.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot write run.json to {target}: {exc.strerror}") from None
        record.run_json = str(target / "run.json")
    return record


def _execute(store: Store, run_id: str, p: Prepared, progress: ProgressFactory | None,
             warmup: int, stop: Stop) -> RunOutcome:
    generation = p.config.generation()
    done = store.done_indices(run_id)
    sink = progress(len(p.prompts), len(done), p.meter.provenance().kind) if progress else None
    try:
        warm_up(p.backend, p.prompts, generation, warmup, p.plan, p.config.batch_size, stop=stop)
    except KeyboardInterrupt:
        return RunOutcome(run_id, 0, interrupted=True)
    watch = InterferenceWatch(p.cpu_seconds, p.meter)
    enough: PrecisionStop | None = None
    if p.config.precision is not None:
        stored = store.results(run_id)
        enough = PrecisionStop(p.config.precision, [r.energy_j for r in stored], [r.ok for r in stored],
                               x=[row_x(r) for r in stored], population=p.population, prompts=len(p.prompts))
    outcome = run_pending(store, run_id, p.backend, p.meter, p.prompts, generation, sink, plan=p.plan,
                          batch_size=p.config.batch_size, stop=stop, watch=watch, enough=enough,
                          after_each=(lambda r: enough.add(r.energy_j, r.ok, row_x(r))) if enough is not None else None)
    if outcome.stopped_early:
        with stop.held():
            # the sample is the run: it is complete with the prompts it answered
            store.set_num_prompts(run_id, len(store.done_indices(run_id)))
    return outcome


def start(config: RunConfig, store: Store, out_dir: Path | None,
          progress: ProgressFactory | None = None, sweep: dict[str, Any] | None = None,
          notify: Notify | None = None) -> tuple[RunRecord, RunOutcome]:
    """A new run: prepare, store its settings, answer every prompt, report.

    Ctrl-C before the run is stored (while the model loads) raises KeyboardInterrupt, with nothing
    stored; after, it stops the run, which is finished as partial.  ``notify`` gets warnings (a busy
    machine) as they arise.
    """
    with stopping() as stop:
        p = prepare(config)
        run_id = new_run_id()
        created = False
        try:
            stop.check()
            if p.busy_warning and notify is not None:
                notify(p.busy_warning)
            idle_w = idle_power_w(p.meter, config.idle_baseline_s) if config.idle_baseline_s > 0 else None
            spec = run_spec(p, idle_w, sweep)
            spec.probe = probe_before(p.meter)
            with stop.held():
                store.create_run(run_id, len(p.prompts), spec)
                created = True
            outcome = _execute(store, run_id, p, progress, config.warmup, stop)
            if not outcome.interrupted:
                with stop.held():
                    probe_after(store, run_id, spec.probe, p.meter)
        except KeyboardInterrupt:
            if not created:
                raise
            outcome = RunOutcome(run_id, 0, interrupted=True)
        finally:
            with stop.held():
                p.backend.close()
        with stop.held():
            return finish(store, run_id, out_dir), outcome


def prompts_sha256(prompts: Sequence[Prompt]) -> str:
    """The prompt set's fingerprint: each prompt's id and messages, in order, as the model sees them."""
    rows = [[p.id, p.messages] for p in prompts]
    text = json.dumps(rows, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_same_prompts(run: RunRow, prompts: Sequence[Prompt]) -> None:
    """Refuse to resume on other prompts than the run started with: its figures would mix two sets.

    Runs stored before the fingerprint was kept are checked by their number of prompts only.
    """
    stored = RunSpec.load(run.spec).task.prompts_sha256
    if stored is None:
        if len(prompts) != run.num_prompts:
            raise DatasetError(f"run {run.run_id} had {run.num_prompts} prompts but its dataset now gives "
                               f"{len(prompts)}; the dataset changed since")
        return
    now = prompts_sha256(prompts)
    if now != stored:
        raise DatasetError(f"run {run.run_id} started on a different prompt set ({run.num_prompts} prompts, hash "
                           f"{stored[:12]}...); the dataset changed since (it now gives {len(prompts)} prompts, "
                           f"hash {now[:12]}...)")


def take_over(store: Store, run_id: str, force: bool) -> RunRow:
    """Make this process the run's owner, unless another live process is (``force``: even then).

    The owner is read and set in one write transaction, so of two resumes started at once exactly one
    takes the run; the other sees the first as the live owner.  Done before the model loads, so the
    loser stops at once, and a run being resumed is never answered twice over.
    """
    with store.transaction():
        run = store.get_run(run_id)
        if not force and owner_alive(run):
            raise StoreError(f"run {run_id} is still running in process {run.pid} on this machine; let it finish, "
                             "stop it, or take the run over with --force")
        store.claim_run(run_id)
    return run


def resume(run_id: str, store: Store, out_dir: Path | None, progress: ProgressFactory | None = None,
           force: bool = False, notify: Notify | None = None) -> tuple[RunRecord, RunOutcome]:
    """Finish a stored run with the settings it was started with; each prompt counts once.

    Failed prompts are answered again: their rows are deleted first, so a prompt still counts once.
    ``force`` takes over a run whose owner process looks alive.  Ctrl-C at any point after the run is
    read finishes it as partial.
    """
    # strict: the settings are run again (a stored run's record is built from RunSpec.load's tolerant ones)
    config = RunConfig.model_validate(RunSpec.load(store.get_run(run_id).spec).config_as_stored())
    run = take_over(store, run_id, force)
    with stopping() as stop:
        p: Prepared | None = None
        outcome = RunOutcome(run_id, 0, interrupted=True)
        try:
            try:
                p = prepare(config)
                check_same_prompts(run, p.prompts)
            except JoulescoreError:
                store.set_status(run_id, run.status)  # refused before any prompt: the run is as it was
                raise
            stop.check()
            if p.busy_warning and notify is not None:
                notify(p.busy_warning)
            with stop.held():
                store.delete_failed_results(run_id)
            # Warm up again: this is a fresh process whose caches are cold.
            outcome = _execute(store, run_id, p, progress, config.warmup, stop)
        except KeyboardInterrupt:
            pass
        finally:
            if p is not None:
                with stop.held():
                    p.backend.close()
        with stop.held():
            return finish(store, run_id, out_dir), outcome
