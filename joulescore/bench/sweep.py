"""A sweep: one task and prompt set, a grid of variants (engine x precision x batch size x model).

Each variant is stored as a normal run, linked to the sweep in the
``sweep_variants`` table (and by ``spec.sweep`` in the run).  A variant that
cannot run (an unsupported setting, out of memory, an engine not installed)
is stored with its reason and the sweep goes on.  Variants run one after
another here, or as Ray tasks across a cluster (``executor: ray``): Ray, not a
home-made scheduler, places them.  Each Ray task reserves a whole node's CPUs
by default, so two variants never share a machine and skew each other's energy.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from joulescore.bench.config import ENERGY_SCORE_NEW_TOKENS, Protocol, RunConfig
from joulescore.errors import BadInput, JoulescoreError
from joulescore.store.sqlite import ResultRow, Store

#: what a variant may fail with and still let the sweep go on (a bug elsewhere still stops it)
VARIANT_FAILURES = (JoulescoreError, MemoryError, RuntimeError, OSError, ImportError, ValueError, TypeError)


class Engine(BaseModel):
    """One engine setting of the grid."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    backend: str
    dtype: str | None = None
    quantization: str | None = None
    device: str | None = None
    endpoint: str | None = None
    serve: str | None = None

    def label(self) -> str:
        return self.name or "-".join(x for x in (self.backend, self.dtype, self.quantization) if x)


class Plan(BaseModel):
    """A sweep plan, as written in YAML (see examples/plan.yaml)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "sweep"
    task: str = "chat"
    dataset: str | None = None
    limit: int | None = Field(None, ge=1)
    protocol: Protocol = "energy-score"
    max_new_tokens: int | None = Field(None, ge=1)
    warmup: int = Field(10, ge=0)
    meter: str = "auto"
    threads: int | None = Field(None, ge=1)
    n_ctx: int = Field(4096, ge=128)
    #: llama.cpp variants: reuse the KV cache of the prefix shared with the previous prompt
    prompt_cache: bool = True
    seed: int = 0
    models: list[str] = Field(default_factory=lambda: ["smollm2-135m"], min_length=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    engines: list[Engine] = Field(min_length=1)
    #: the variant savings are measured against (default: the first)
    baseline: str | None = None
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    #: CPUs each Ray task reserves (default: all of the driver's, i.e. one variant per node)
    ray_num_cpus: float | None = None


def load_plan(path: Path) -> Plan:
    """A plan file, checked; any problem is a one-line error."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read sweep plan {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"sweep plan {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Plan.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise BadInput(f"sweep plan {path}: {where}: {err['msg']}") from None


def variants(plan: Plan) -> list[tuple[str, RunConfig]]:
    """Every (name, run settings) of the grid, in plan order: model, engine, batch size."""
    from joulescore.tasks.spec import load_spec

    if plan.max_new_tokens is not None:
        new_tokens = plan.max_new_tokens
    else:
        new_tokens = ENERGY_SCORE_NEW_TOKENS if plan.protocol == "energy-score" else \
            load_spec(plan.task).natural_max_new_tokens
    out = []
    for model in plan.models:
        for engine in plan.engines:
            for batch in plan.batch_sizes:
                name = f"{engine.label()}/b{batch}" + (f"/{model}" if len(plan.models) > 1 else "")
                config = RunConfig(
                    model=model, task=plan.task, dataset=plan.dataset, backend=engine.backend, meter=plan.meter,
                    protocol=plan.protocol, max_new_tokens=new_tokens, limit=plan.limit, warmup=plan.warmup,
                    batch_size=batch, seed=plan.seed, threads=plan.threads, n_ctx=plan.n_ctx,
                    prompt_cache=plan.prompt_cache, dtype=engine.dtype,
                    quantization=engine.quantization, device=engine.device, endpoint=engine.endpoint,
                    serve=engine.serve)
                out.append((name, config))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise BadInput("sweep plan: two engines share a name; give them distinct `name:`s")
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"[:300]


def _run_portable(config: dict[str, Any], sweep: dict[str, Any]) -> dict[str, Any]:
    """Run one variant in a throwaway store and return everything needed to store it elsewhere.

    This is what a Ray task executes, on whichever node Ray chose: the rows
    travel back to the driver, whose database is the only one that keeps them.
    """
    from joulescore.bench import session

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "variant.db")
        try:
            record, _ = session.start(RunConfig.model_validate(config), store, None, sweep=sweep)
        except VARIANT_FAILURES as exc:
            return {"error": _reason(exc)}
        run = store.get_run(record["run_id"])
        rows = [asdict(r) for r in store.results(run.run_id)]
        store.close()
    return {"run_id": run.run_id, "num_prompts": run.num_prompts, "spec": run.spec, "rows": rows}


def _store_portable(store: Store, out_dir: Path | None, payload: dict[str, Any]) -> dict[str, Any]:
    from joulescore.bench import session

    store.create_run(payload["run_id"], payload["num_prompts"], payload["spec"])
    store.add_results(payload["run_id"], [ResultRow(**r) for r in payload["rows"]])
    return session.finish(store, payload["run_id"], out_dir)


def _ray_tasks(plan: Plan, jobs: list[tuple[int, str, RunConfig]], sweep_id: str
               ) -> Callable[[], list[tuple[int, dict[str, Any]]]]:
    try:
        import ray
    except ImportError:
        raise BadInput("executor ray needs Ray: pip install 'joulescore[ray]' (or pip install ray)") from None
    from joulescore.hardware import logical_cpus

    ray.init(address=plan.ray_address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_cpus=plan.ray_num_cpus or logical_cpus(), max_retries=0)(_run_portable)
    refs = {remote.remote(c.model_dump(), {"id": sweep_id, "variant": name}): pos for pos, name, c in jobs}

    def gather() -> list[tuple[int, dict[str, Any]]]:
        done = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                done.append((refs[ready[0]], ray.get(ready[0])))
            except Exception as exc:  # a worker that died (OOM kill, node lost) is that variant's failure
                done.append((refs[ready[0]], {"error": _reason(exc)}))
        return done

    return gather


def run_sweep(plan: Plan, store: Store, out_dir: Path | None, use_ray: bool = False,
              report: Callable[[str, dict[str, Any]], None] | None = None, resume_id: str | None = None) -> str:
    """Run every variant of the plan, store each as a run, and return the sweep id.

    ``resume_id`` carries on an interrupted sweep: finished variants are kept,
    a variant whose run was cut short is resumed (each prompt counted once),
    and the rest are started.
    """
    grid = variants(plan)
    started: dict[str, str] = {}
    if resume_id is None:
        sweep_id = f"sweep-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        store.create_sweep(sweep_id, plan.name, plan.model_dump())
        for pos, (name, config) in enumerate(grid):
            store.set_variant(sweep_id, pos, name, config.model_dump(), "pending")
    else:
        sweep_id = resume_id
        _, rows = store.get_sweep(sweep_id)
        settled = {r["position"] for r in rows if r["status"] in ("complete", "failed")}
        grid_left = [(pos, g) for pos, g in enumerate(grid) if pos not in settled]
        for run in store.list_runs():
            link = run.spec.get("sweep") or {}
            if link.get("id") == sweep_id:
                started[link["variant"]] = run.run_id

    def settle(pos: int, name: str, config: RunConfig, outcome: dict[str, Any]) -> None:
        settings = config.model_dump()
        if "error" in outcome:
            store.set_variant(sweep_id, pos, name, settings, "failed", reason=outcome["error"])
        else:
            store.set_variant(sweep_id, pos, name, settings, outcome["status"], run_id=outcome["run_id"])
        if report is not None:
            report(name, outcome)

    todo = grid_left if resume_id is not None else list(enumerate(grid))
    if use_ray or plan.executor == "ray":
        gather = _ray_tasks(plan, [(pos, name, c) for pos, (name, c) in todo if name not in started], sweep_id)
        for pos, payload in gather():
            name, config = grid[pos]
            outcome = payload if "error" in payload else _store_portable(store, out_dir, payload)
            settle(pos, name, config, outcome)
        return sweep_id

    from joulescore.bench import session

    for pos, (name, config) in todo:
        try:
            if name in started:
                record, outcome = session.resume(started[name], store, out_dir)
            else:
                record, outcome = session.start(config, store, out_dir, sweep={"id": sweep_id, "variant": name})
        except VARIANT_FAILURES as exc:
            settle(pos, name, config, {"error": _reason(exc)})
            continue
        settle(pos, name, config, record)
        if outcome.interrupted:
            raise KeyboardInterrupt
    return sweep_id
