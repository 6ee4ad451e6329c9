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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from joulescore.errors import BadInput, JoulescoreError
from joulescore.model.config import MAX_SWEEP_VARIANTS, RunConfig, describe_error, engine_option_names
from joulescore.model.options import ENGINE_OPTIONS
from joulescore.model.record import RunRecord
from joulescore.model.spec import RunSpec
from joulescore.store.sqlite import ResultRow, Store
from joulescore.textfile import MAX_DEPTH, read_text, shape_problem

#: what a variant may fail with and still let the sweep go on (a bug elsewhere still stops it)
VARIANT_FAILURES = (JoulescoreError, MemoryError, RuntimeError, OSError, ImportError, ValueError, TypeError)


class Engine(BaseModel):
    """One engine setting of the grid: a backend and its options (checked by the run settings)."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None
    backend: str

    def options(self) -> dict[str, Any]:
        """The backend and its options, as run settings."""
        return {"backend": self.backend, **(self.model_extra or {})}

    def label(self) -> str:
        extra = self.model_extra or {}
        return self.name or "-".join(str(x) for x in (self.backend, extra.get("dtype"), extra.get("quantization")) if x)


#: plan keys that are not run settings: the grid's axes and how to run it
PLAN_KEYS = ("name", "base", "models", "batch_sizes", "engines", "baseline", "executor", "ray_address", "ray_num_cpus")


class Plan(BaseModel):
    """A sweep plan (see examples/plan.yaml): run settings shared by every variant, and the grid's axes.

    In YAML the shared settings (task, limit, protocol, warmup...) sit at the top
    level beside the axes; here they are ``base``, and each variant is the
    :class:`RunConfig` of ``base`` plus one model, one engine and one batch size.
    """

    model_config = ConfigDict(extra="forbid")
    name: str = "sweep"
    base: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=lambda: ["smollm2-135m"], min_length=1)
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1)
    engines: list[Engine] = Field(min_length=1)
    #: the variant savings are measured against (default: the first)
    baseline: str | None = None
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    #: CPUs each Ray task reserves (default: all of the driver's, i.e. one variant per node)
    ray_num_cpus: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _shared_settings(cls, data: Any) -> Any:
        """Top-level run settings (task, limit, ...) go to ``base``; unknown keys stay and are refused."""
        if not isinstance(data, dict):
            return data
        settings = set(RunConfig.model_fields) | set(engine_option_names())
        base = dict(data.get("base") or {})
        rest = {}
        for key, value in data.items():
            if key not in PLAN_KEYS and key in settings:
                base[key] = value
            elif key != "base":
                rest[key] = value
        return {**rest, "base": base}

    @property
    def task(self) -> str:
        return str(self.base.get("task", RunConfig.model_fields["task"].default))

    @property
    def limit(self) -> int | None:
        return self.base.get("limit")


def _plan_error(path: Path, where: list[Any], message: str, lines: dict[tuple[Any, ...], int]) -> BadInput:
    """A plan problem as one line: the file, the line of the key (where YAML knows it), the key and what is wrong."""
    key = ".".join(str(x) for x in where)
    for n in range(len(where), 0, -1):
        line = lines.get(tuple(where[:n]))
        if line is not None:
            return BadInput(f"sweep plan {path}: line {line}: {key}: {message}")
    return BadInput(f"sweep plan {path}: {key}: {message}" if key else f"sweep plan {path}: {message}")


def _key_lines(node: yaml.Node, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Where each key (and list item) of a YAML document starts, 1-based."""
    out: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            out.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            out[path] = item.start_mark.line + 1
            out.update(_key_lines(item, path))
    return out


def grid_size(plan: Plan) -> int:
    """How many variants the plan expands to, counted without expanding it."""
    return len(plan.models) * len(plan.engines) * len(plan.batch_sizes)


def check_grid_size(plan: Plan, max_variants: int, where: str = "sweep plan") -> None:
    """Refuse a grid over ``max_variants`` before any variant is built, checked or stored."""
    count = grid_size(plan)
    if count > max_variants:
        raise BadInput(f"{where}: {count:,} variants ({len(plan.models)} models x {len(plan.engines)} engines x "
                       f"{len(plan.batch_sizes)} batch sizes) is over the limit of {max_variants:,}; "
                       f"split the plan, or raise the limit with --max-variants {count}")


def load_plan(path: Path, max_variants: int = MAX_SWEEP_VARIANTS) -> Plan:
    """A plan file, checked down to every variant's settings; any problem is a one-line error."""
    text = read_text(path, "sweep plan")
    try:
        data = yaml.safe_load(text)
        problem = shape_problem(data)  # before walking the nodes: aliases can make a small file huge
        if problem:
            raise BadInput(f"sweep plan {path}: {problem}")
        root = yaml.compose(text)
        lines = _key_lines(root) if root is not None else {}
    except yaml.YAMLError as exc:
        raise BadInput(f"sweep plan {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:  # PyYAML composes recursively: a very deep document overflows the stack
        raise BadInput(f"sweep plan {path}: nested too deep (over {MAX_DEPTH} levels)") from None
    if data is not None and not isinstance(data, dict):
        raise BadInput(f"sweep plan {path}: expected a mapping of settings, got {type(data).__name__}")
    try:
        plan = Plan.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [x for x in first["loc"] if x != "base"]
        raise _plan_error(path, loc, describe_error(first, flags=False), lines) from None
    check_grid_size(plan, max_variants, f"sweep plan {path}")
    try:
        variants(plan)
    except VariantError as exc:
        raise _plan_error(path, exc.where, exc.message, lines) from None
    return plan


class VariantError(BadInput):
    """A variant's settings are invalid; ``where`` is the plan key that made them."""

    def __init__(self, where: list[Any], message: str) -> None:
        super().__init__(message)
        self.where, self.message = where, message


def _repeated(axis: str, values: list[Any]) -> VariantError | None:
    """An axis listing the same value twice: each variant would run twice under one name, so say which."""
    first: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in first:
            return VariantError([axis, i], f"{value!r} is listed twice (items {first[value]} and {i}): each "
                                           f"variant runs once; remove the repeat")
        first[value] = i
    return None


def variants(plan: Plan) -> list[tuple[str, RunConfig]]:
    """Every (name, run settings) of the grid, in plan order: model, engine, batch size."""
    for axis, values in (("models", plan.models), ("batch_sizes", plan.batch_sizes)):
        problem = _repeated(axis, values)
        if problem is not None:
            raise problem
    labels: dict[str, int] = {}
    for e, engine in enumerate(plan.engines):
        if engine.label() in labels:
            same = engine.options() == plan.engines[labels[engine.label()]].options()
            raise VariantError(["engines", e], (f"the same engine as engines item {labels[engine.label()]} "
                                                f"(remove the repeat)") if same else
                               (f"named {engine.label()!r} like engines item {labels[engine.label()]}; give "
                                f"each engine a distinct `name:`"))
        labels[engine.label()] = e
    for e, engine in enumerate(plan.engines):
        takes = ENGINE_OPTIONS.get(engine.backend)
        wrong = [k for k in engine.model_extra or {} if takes is not None and k not in takes.model_fields]
        if wrong:
            raise VariantError(["engines", e, wrong[0]], f"backend {engine.backend} does not take {wrong[0]}")
    out = []
    for model in plan.models:
        for e, engine in enumerate(plan.engines):
            for batch in plan.batch_sizes:
                name = f"{engine.label()}/b{batch}" + (f"/{model}" if len(plan.models) > 1 else "")
                settings = {**plan.base, "model": model, "batch_size": batch, **engine.options()}
                try:
                    config = RunConfig.model_validate(settings)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    field = next((str(x) for x in reversed(first["loc"]) if isinstance(x, str)), "")
                    if field in engine.options() or not field:
                        where: list[Any] = ["engines", e] + ([field] if field else [])
                    elif field == "batch_size":
                        where = ["batch_sizes", plan.batch_sizes.index(batch)]
                    elif field == "model":
                        where = ["models", plan.models.index(model)]
                    else:
                        where = [field]
                    raise VariantError(where, describe_error(first, flags=False)) from None
                out.append((name, config))
    names = [n for n, _ in out]
    clash = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if clash is not None:  # an engine named like another's name with its batch size ("x/b1"): rare, but refused
        raise BadInput(f"sweep plan: two variants would both be named {clash!r}; give the engines other `name:`s")
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
        run = store.get_run(record.run_id)
        rows = [asdict(r) for r in store.results(run.run_id)]
        store.close()
    return {"run_id": run.run_id, "num_prompts": run.num_prompts, "spec": run.spec, "rows": rows}


def _store_portable(store: Store, out_dir: Path | None, payload: dict[str, Any]) -> RunRecord:
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


def _left_to_run(store: Store, sweep_id: str, grid: list[tuple[str, RunConfig]]
                 ) -> tuple[list[tuple[int, tuple[str, RunConfig]]], dict[str, str]]:
    """An interrupted sweep's variants not yet settled, and the run each started one has (variant -> run id)."""
    _, rows = store.get_sweep(sweep_id)
    settled = {r["position"] for r in rows if r["status"] in ("complete", "failed")}
    started: dict[str, str] = {}
    for run in store.list_runs():
        link = RunSpec.load(run.spec).sweep
        if link is not None and link.id == sweep_id:
            started[link.variant] = run.run_id
    return [(pos, g) for pos, g in enumerate(grid) if pos not in settled], started


def run_sweep(plan: Plan, store: Store, out_dir: Path | None, use_ray: bool = False,
              report: Callable[[str, RunRecord | str], None] | None = None, resume_id: str | None = None,
              on_start: Callable[[str], None] | None = None) -> str:
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
        todo = list(enumerate(grid))
    else:
        sweep_id = resume_id
        todo, started = _left_to_run(store, sweep_id, grid)

    def settle(pos: int, name: str, config: RunConfig, outcome: RunRecord | str) -> None:
        """Store a variant's outcome: its run's record, or the reason (a string) it has none."""
        settings = config.model_dump()
        if isinstance(outcome, str):
            store.set_variant(sweep_id, pos, name, settings, "failed", reason=outcome)
        else:
            store.set_variant(sweep_id, pos, name, settings, outcome.status, run_id=outcome.run_id)
        if report is not None:
            report(name, outcome)

    if on_start is not None:
        on_start(sweep_id)  # before any variant runs, so an interrupted sweep can be found again
    if use_ray or plan.executor == "ray":
        gather = _ray_tasks(plan, [(pos, name, c) for pos, (name, c) in todo if name not in started], sweep_id)
        for pos, payload in gather():
            name, config = grid[pos]
            settle(pos, name, config, payload["error"] if "error" in payload
                   else _store_portable(store, out_dir, payload))
        return sweep_id

    from joulescore.bench import session

    for pos, (name, config) in todo:
        try:
            if name in started:
                record, outcome = session.resume(started[name], store, out_dir)
            else:
                record, outcome = session.start(config, store, out_dir, sweep={"id": sweep_id, "variant": name})
        except VARIANT_FAILURES as exc:
            settle(pos, name, config, _reason(exc))
            continue
        settle(pos, name, config, record)
        if outcome.interrupted:
            raise KeyboardInterrupt
    return sweep_id
