"""The run record: every figure of a run, computed from its stored rows.

The record is always rebuilt from the database, never accumulated in memory,
so a resumed run reports exactly what a single uninterrupted one would.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import psutil

from joulescore.model.record import Interval, RunRecord, Sampling
from joulescore.model.sections import Meter
from joulescore.model.spec import RunSpec
from joulescore.store.estimate import REFERS_TO, Population, row_x
from joulescore.store.interference import summarize
from joulescore.store.interval import MIN_PROMPTS, estimate_section, interval_section
from joulescore.store.media import media_section
from joulescore.store.rows import BatchWindow, ResultRow, RunRow, WindowFigures
from joulescore.tasks.metrics import Quality, Response, score
from joulescore.units import J_PER_WH
from joulescore.units import percentiles as _percentiles


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


#: how far apart two readings of one process's start time may be (the boot time they are
#: computed from is whole seconds, and can move by one)
START_TOLERANCE_S = 2.0


def owner_alive(run: RunRow) -> bool:
    """Whether another process on this machine is still working on the run.

    A live pid is not enough: after a crash (or a reboot) the system may have handed the pid to an
    unrelated process, so its start time must match the one stored with the run.  A run stored
    before start times were kept has only its pid to go by.
    """
    if run.status != "running" or run.host != os.uname().nodename or not run.pid or run.pid == os.getpid():
        return False
    try:
        proc = psutil.Process(run.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started_s = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's process: it cannot be told apart, so take it for the owner
    return run.pid_started_s is None or abs(started_s - run.pid_started_s) <= START_TOLERANCE_S


def run_status(run: RunRow, done: int, succeeded: int) -> str:
    """The one status of a run, for ``runs``, ``show`` and the board alike.

    running: the store says so and its process is alive on this host (on another host
    only the store can tell, so it is believed).  Otherwise from the stored rows:
    complete (every prompt answered), failed (none succeeded) or partial (prompts left:
    interrupted, or killed before it could say so; ``run --resume`` finishes it).
    """
    if run.status == "running" and (run.host != os.uname().nodename or owner_alive(run)):
        return "running"
    if done < run.num_prompts:
        return "partial"
    return "complete" if succeeded else "failed"


def quality_of(metric: str, results: list[ResultRow]) -> Quality:
    """Score the answers; under a reasoning mode the metric sees only the answer section."""
    responses = [Response(r.scored_text, r.output_tokens, r.extra.reference) for r in results if r.ok]
    return score(metric, responses)


def reasoning_figures(ok: list[ResultRow]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Counts and energy of the reasoning/answer split; all null for a run without a reasoning mode."""
    split = [r.extra.reasoning for r in ok if r.extra.reasoning is not None]
    if not split:
        keys = ("reasoning_tokens", "answer_tokens", "reasoning_truncated", "reasoning_unclosed",
                "reasoning_unmarked", "reasoning_tokens_per_query")
        return dict.fromkeys(keys), {"reasoning_j": None, "answer_j": None}
    states = [s.state for s in split]
    counts = {
        "reasoning_tokens": sum(s.tokens for s in split),
        "answer_tokens": sum(s.answer_tokens for s in split),
        "reasoning_truncated": states.count("truncated"),
        "reasoning_unclosed": states.count("unclosed"),
        "reasoning_unmarked": states.count("unmarked"),
        "reasoning_tokens_per_query": _percentiles([float(s.tokens) for s in split]),
    }
    energy = {"reasoning_j": _r(sum(s.reasoning_j for s in split)),
              "answer_j": _r(sum(s.answer_j for s in split))}
    return counts, energy


def _net(meter: Meter, gross_j: float, duration_s: float) -> dict[str, Any]:
    """Net energy (gross minus idle power x measured time), only when an idle baseline was asked for."""
    idle = meter.idle_power_w
    if idle is None:
        return {}
    idle_w = sum(idle.values())
    return {
        "gross_total_j": _r(gross_j),
        "idle_power_w": _r(idle_w),
        "idle_j": _r(idle_w * duration_s),
        "net_total_j": _r(gross_j - idle_w * duration_s),
        "net_note": f"total_j is gross; net_total_j subtracts idle power ({meter.kind}, "
                    f"{meter.idle_baseline_s} s baseline) x {duration_s:.3f} s measured",
    }


def phases_withheld(meter: Meter, split_phases: bool, ok: list[ResultRow]) -> str | None:
    """Why the prefill/decode split is withheld: a scraped meter's samples are further apart than a typical
    prefill lasts, so the split would be interpolation only (``--split-phases`` asks for it anyway)."""
    per_domain = meter.per_domain or {}
    res = [float(v["resolution_s"]) for v in per_domain.values() if "resolution_s" in v]
    if split_phases or not res or not ok:
        return None
    prefill_s = statistics.median(r.prefill_s for r in ok)
    if max(res) <= prefill_s:
        return None
    return (f"prefill/decode split withheld: the meter's samples are {max(res):.3g} s apart, coarser than the "
            f"median prefill ({prefill_s:.3g} s); the run's total stands; --split-phases gives the interpolated split")


def phase_split_of(spec: RunSpec, results: list[ResultRow]) -> tuple[Meter, dict[str, float | None]]:
    """The record's meter (with a note where the split is withheld) and its prefill/decode shares."""
    total_j = sum(r.energy_j for r in results)
    prefill_j, decode_j = sum(r.prefill_j for r in results), sum(r.decode_j for r in results)
    withheld = phases_withheld(spec.meter, spec.config.split_phases, [r for r in results if r.ok])
    meter = spec.meter if withheld is None else spec.meter.model_copy(update={"notes": [*spec.meter.notes, withheld]})
    shown = bool(total_j) and withheld is None
    return meter, {"prefill_pct": _r(100 * prefill_j / total_j, 2) if shown else None,
                   "decode_pct": _r(100 * decode_j / total_j, 2) if shown else None}


def steady_state(spec: RunSpec, results: list[ResultRow]) -> dict[str, Any] | None:
    """Figures from the window in which each batch was full (the ML.ENERGY method).

    A batch's steady window opens when every row has its first token and closes
    when its first row finishes, so ramp-up (prefill) and drain are left out.
    None for batch 1, or where the engine ran the batch one prompt at a time.
    """
    batches: dict[int, BatchWindow] = {}
    for r in results:
        b = r.extra.batch
        if b is not None and b.steady_j is not None:
            batches.setdefault(b.id, b)
    if not batches:
        return None
    energy_j = sum(b.steady_j or 0.0 for b in batches.values())
    window_s = sum(b.steady_s or 0.0 for b in batches.values())
    tokens = sum(b.steady_tokens or 0 for b in batches.values())
    return {
        "j_per_output_token": _r(energy_j / tokens) if tokens else None,
        "tokens_per_s": _r(tokens / window_s, 3) if window_s else None,
        "window_s": _r(window_s, 3),
        "energy_j": _r(energy_j),
        "output_tokens": tokens,
        "batches": len(batches),
        "kind": spec.meter.kind,
        "note": "decode steps while every row of a batch was still generating; energy from the same meter "
                "as the whole-run figures and covering the same domains",
    }


def interference_of(spec: RunSpec, results: list[ResultRow]) -> dict[str, Any] | None:
    """The record's interference section; None for a run stored before interference was recorded."""
    rows = [r.extra.interference or WindowFigures() for r in results]
    if "interference" not in spec.model_fields_set and all(r.extra.interference is None for r in results):
        return None
    return summarize(rows, spec.interference, spec.config.disturbed_cpu_pct, spec.config.disturbed_steal_pct)


def interval_of(spec: RunSpec, results: list[ResultRow]) -> Interval | None:
    """The record's interval: of the prompts answered, or, for a sampled run, of its estimate of the full run."""
    energy, ok = [r.energy_j for r in results], [r.ok for r in results]
    precision = spec.config.precision
    # an ordinary run answers all it was given; only a sampled run needs the task's full count
    available = len(results) if precision is None else spec.task.num_prompts
    if len(results) >= available:
        section = interval_section(energy, ok)
        if section is not None:
            order = " in the shuffled order" if precision is not None else ""
            section.refers_to = (f"J/query of the {len(results)} prompts as answered{order}; the interval "
                                    "is over prompts like these")
        return section
    population = Population.from_spec(spec.population)
    if population is not None and population.prompts != available:
        population = None  # counted over other prompts than the run's: not this run's population
    refers = REFERS_TO.format(n=available)
    if population is None:
        refers += ("; plain mean of the sampled prompts as answered in the shuffled order (prefix-cache reuse "
                   "not adjusted to dataset order)")
    return estimate_section(energy, ok, [row_x(r) for r in results] if population else None, population,
                            available, refers)


def sampling_of(spec: RunSpec, results: list[ResultRow], interval: Interval | None) -> Sampling | None:
    """What a ``--precision`` run says about its sample; None for an ordinary run."""
    precision = spec.config.precision
    if precision is None:
        return None
    available = spec.task.num_prompts
    half = interval.half_width_pct if interval else None
    reached = len(results) >= min(MIN_PROMPTS, available) and half is not None and half <= precision
    if len(results) >= available:
        stopped = "all prompts answered"
    elif reached:
        stopped = "precision reached"
    else:
        stopped = "not finished"
    ok = [r for r in results if r.ok]
    sampled = len(results) < available
    return Sampling(precision_pct=precision, seed=spec.config.seed, min_prompts=MIN_PROMPTS,
                    prompts_run=len(results), prompts_available=available, sampled=sampled, reached=reached,
                    stopped=stopped, estimator=interval.estimator if interval else None,
                    why_plain=spec.population.why_plain if sampled and spec.population else None,
                    sample_j_per_query=_r(sum(r.energy_j for r in results) / len(ok)) if ok else None)


def _whole_machine(results: list[ResultRow]) -> float | None:
    if not any(r.extra.machine_j is not None for r in results):
        return None
    return sum(r.extra.machine_j if r.extra.machine_j is not None else r.energy_j for r in results)


def counts_of(run: RunRow, results: list[ResultRow]) -> dict[str, Any]:
    """The record's ``counts``: prompts, tokens, truncations and the reasoning split's counts."""
    ok = [r for r in results if r.ok]
    return {
        "prompts": run.num_prompts,
        "done": len(results),
        "succeeded": len(ok),
        "failed": len(results) - len(ok),
        "input_tokens": sum(r.input_tokens for r in ok),
        #: of those, taken from the engine's KV cache (a prefix shared with the previous prompt)
        "cached_input_tokens": sum(r.extra.cached_input_tokens for r in ok),
        "output_tokens": sum(r.output_tokens for r in ok),
        "truncated": sum(1 for r in ok if r.finish_reason == "length"),
        "output_tokens_per_query": _percentiles([float(r.output_tokens) for r in ok]),
        **reasoning_figures(ok)[0],
    }


def energy_of(spec: RunSpec, results: list[ResultRow], covered: set[str]) -> dict[str, Any]:
    """The record's ``energy``: totals by domain (null for a domain the meter does not cover) and by phase."""
    ok = [r for r in results if r.ok]
    domains: dict[str, float] = {}
    for r in results:
        for name, value in r.domains.items():
            domains[name] = domains.get(name, 0.0) + value
    total_j = sum(r.energy_j for r in results)
    whole_j = _whole_machine(results)
    by_domain = {f"{key}_j": _r(domains.get(name, 0.0)) if name in covered else None
                 for key, name in (("cpu", "cpu"), ("ram", "dram"), ("gpu", "gpu"), ("system", "system"))}
    return {
        "total_j": _r(total_j), **by_domain,
        "prefill_j": _r(sum(r.prefill_j for r in results)),
        "decode_j": _r(sum(r.decode_j for r in results)),
        **reasoning_figures(ok)[1],
        "low_j": _r(sum(r.low_j for r in results)),
        "high_j": _r(sum(r.high_j for r in results)),
        "per_query_j": {k: _r(v) for k, v in _percentiles([r.energy_j for r in ok]).items()},
        **_net(spec.meter, total_j, sum(r.duration_s for r in results)),
        "whole_machine_j": _r(whole_j),
        "attribution": None if whole_j is None else
        "total_j is the run's share: idle CPU and DRAM power shared out by the run's share of busy CPU "
        "time while other processes were busy; whole_machine_j is the whole machine (docs/methodology.md)",
    }


def per_query_of(results: list[ResultRow], sampling: Sampling | None, interval: Interval | None,
                 covered: set[str]) -> dict[str, Any]:
    """The headline rates: Wh per 1,000 queries (all, GPU only, whole machine), J/query and J/token.

    A sampled run's J/query is its estimate of the full run (``sampling.sample_j_per_query`` keeps the sample's).
    """
    ok = [r for r in results if r.ok]
    total_j = sum(r.energy_j for r in results)
    output_tokens = sum(r.output_tokens for r in ok)
    gpu_j = sum(r.domains.get("gpu", 0.0) for r in results)
    whole_j = _whole_machine(results)
    per_query = interval.j_per_query if sampling and sampling.sampled and interval else \
        total_j / len(ok) if ok else None
    return {
        "wh_per_1000_queries": _r(per_query * 1000 / J_PER_WH) if per_query is not None else None,
        "j_per_query": _r(per_query),
        "gpu_wh_per_1000_queries": _r(gpu_j / len(ok) * 1000 / J_PER_WH) if ok and "gpu" in covered else None,
        "whole_machine_wh_per_1000_queries": _r(whole_j / len(ok) * 1000 / J_PER_WH)
        if ok and whole_j is not None else None,
        "j_per_output_token": _r(total_j / output_tokens) if output_tokens else None,
    }


def timing_of(spec: RunSpec, results: list[ResultRow]) -> dict[str, Any]:
    """Duration, throughput, latency, batching and the steady state."""
    ok = [r for r in results if r.ok]
    duration_s = sum(r.duration_s for r in results)
    output_tokens = sum(r.output_tokens for r in ok)
    ttft = [r.ttft_s for r in ok]
    batch_size = spec.config.batch_size
    return {
        "duration_s": _r(duration_s, 3),
        "tokens_per_s": _r(output_tokens / duration_s, 3) if duration_s and output_tokens else None,
        "queries_per_s": _r(len(ok) / duration_s, 3) if duration_s else None,
        "latency": {
            "ttft_s": {k: _r(v) for k, v in _percentiles(ttft).items()},
            "e2e_s": {k: _r(v) for k, v in _percentiles([r.latency_s for r in ok]).items()},
            "mean_s": _r(statistics.fmean(r.latency_s for r in ok)) if ok else None,
        },
        "batching": {
            "batch_size": batch_size,
            "mode": spec.model.extra.get("batching", "sequential"),
            "attribution": None if batch_size == 1 else
            "a batch's prefill energy split by input tokens, decode energy by output tokens",
        },
        "steady_state": steady_state(spec, results) if batch_size > 1 else None,
    }


def build_record(run: RunRow, results: list[ResultRow], tool_version: str) -> RunRecord:
    """The run record printed by ``run --json`` and written to run.json.

    ``tool_version`` is used only for runs stored before the spec kept the version that ran them.
    """
    spec = RunSpec.load(run.spec)
    ok = [r for r in results if r.ok]
    covered = set(spec.meter.domains if "domains" in spec.meter.model_fields_set else
                  {name for r in results for name in r.domains})
    meter, phase_split = phase_split_of(spec, results)
    interval = interval_of(spec, results)
    sampling = sampling_of(spec, results, interval)
    config = spec.config_as_stored()
    if "reasoning" in spec.model_fields_set:  # the plan applied, in place of the mode asked for
        config["reasoning"] = spec.reasoning.model_dump(mode="json", exclude_unset=True) if spec.reasoning else None
    return RunRecord.build({
        "run_id": run.run_id,
        "status": run_status(run, len(results), len(ok)),
        "tool": {"name": "joulescore", "version": spec.tool_version or tool_version},
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "model": spec.model, "task": spec.task, "config": config, "hardware": spec.hardware, "meter": meter,
        "counts": counts_of(run, results),
        "energy": energy_of(spec, results, covered),
        "phase_split": phase_split,
        **per_query_of(results, sampling, interval, covered),
        "interval": interval,
        "sampling": sampling,
        **timing_of(spec, results),
        "quality": quality_of(spec.task.metric, results).as_dict(),
        "media": media_section(spec, results),
        "interference": interference_of(spec, results),
        "errors": sorted({r.error for r in results if r.error})[:10],
        "sweep": spec.sweep,
        "interleave": spec.interleave,
        "probe": spec.probe.model_dump(mode="json", exclude_unset=True) if spec.probe else None,
    })


def summary_row(run: RunRow, done: int, succeeded: int) -> dict[str, Any]:
    """One line of ``joulescore runs``: its status and prompt counts from the stored rows (as ``show``
    has them), its figures from the stored record where the run has one."""
    rec = run.record or {}
    spec = RunSpec.load(run.spec)
    return {
        "run_id": run.run_id,
        "status": run_status(run, done, succeeded),
        "model": spec.model.name,
        "task": spec.task.name,
        "prompts": f"{done}/{run.num_prompts}",
        "wh": rec.get("wh_per_1000_queries"),
        "jpt": rec.get("j_per_output_token"),
        "kind": spec.meter.kind,
    }
