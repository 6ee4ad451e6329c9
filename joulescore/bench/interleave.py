"""``compare --interleave``: run A's and B's settings again, in alternating blocks, on this machine now.

Runs made an hour apart carry the machine's drift (another tenant, a clock) into their ratio.  Here both
models are loaded, warmed up, and answer the same prompts in blocks ordered A B B A A B ... (each pair of
blocks starts with the one that went second before), so a drift that is slow next to a block touches both
sides equally, and cancels in the paired ratio without any model of it.  Before each block after the first,
the prompt before it is answered again, uncounted: the switch from the other model costs neither side.  Each side is stored as an ordinary
run (linked to the other by ``spec.interleave``) and then compared as ``compare`` compares any two runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from joulescore.bench import session
from joulescore.bench.compare_data import RunData
from joulescore.bench.probe import probe_after, probe_before
from joulescore.bench.runner import run_pending, warm_up
from joulescore.bench.stopping import stopping
from joulescore.errors import BadInput
from joulescore.meters.interference import InterferenceWatch
from joulescore.model.config import RunConfig
from joulescore.model.spec import RunSpec
from joulescore.store.sqlite import Store


def settings_of(run: RunData) -> RunConfig:
    """The settings a run was made with, ready to run again (its reasoning plan back to its mode)."""
    config = dict(run.record.config)
    if isinstance(config.get("reasoning"), dict):
        config["reasoning"] = config["reasoning"].get("mode")
    config.pop("disturbed_cpu_pct", None)  # this machine's thresholds now, not the ones stored
    config.pop("disturbed_steal_pct", None)
    config.pop("busy_probe_s", None)
    if config.get("precision") is not None:
        raise BadInput(f"--interleave reruns every prompt; run {run.source} is a sampled --precision run")
    return RunConfig.model_validate(config)


def blocks_of(count: int, blocks: int) -> list[range]:
    """``count`` prompt positions cut into ``blocks`` contiguous, nearly equal blocks."""
    if blocks < 1:
        raise BadInput(f"--blocks must be at least 1, got {blocks}")
    blocks = min(blocks, count)
    edges = [round(i * count / blocks) for i in range(blocks + 1)]
    return [range(edges[i], edges[i + 1]) for i in range(blocks)]


def _start(store: Store, p: session.Prepared) -> str:
    run_id = session.new_run_id()
    spec = session.run_spec(p)
    spec.probe = probe_before(p.meter)
    store.create_run(run_id, len(p.prompts), spec)
    return run_id


def _answer(store: Store, run_id: str, p: session.Prepared, positions: range) -> bool:
    """One block of one side; False when it was interrupted.

    The other model ran in between and evicted this one from the caches: the prompt before the block (before
    the first, the last warm-up prompt) is answered again, uncounted, so the block starts as it would in a plain run (warm, with that prompt's
    prefix in the engine's KV cache), and neither side pays for the switch.
    """
    # before the first block, the last warm-up prompt (what a plain run answered just before it)
    before = positions.start - 1 if positions.start > 0 else max(p.config.warmup, 1) - 1
    warm_up(p.backend, [p.prompts[before]], p.config.generation(), 1, p.plan, 1)
    watch = InterferenceWatch(p.cpu_seconds, p.meter)
    outcome = run_pending(store, run_id, p.backend, p.meter, [p.prompts[i] for i in positions],
                          p.config.generation(), plan=p.plan, batch_size=p.config.batch_size, watch=watch)
    return not outcome.interrupted


def interleave(a: RunData, b: RunData, store: Store, out_dir: Path | None, blocks: int) -> tuple[str, str]:
    """Run A's and B's settings in alternating blocks; the two new run ids.  Bad input before anything runs."""
    return interleave_settings((settings_of(a), settings_of(b)), store, out_dir, blocks)


def interleave_settings(configs: tuple[RunConfig, RunConfig], store: Store, out_dir: Path | None,
                        blocks: int) -> tuple[str, str]:
    """:func:`interleave` from the two settings themselves (benchmarks/compare_power.py runs these)."""
    prepared: list[session.Prepared] = []
    try:
        for config in configs:
            prepared.append(session.prepare(config))
        pa, pb = prepared
        if session.prompts_sha256(pa.prompts) != session.prompts_sha256(pb.prompts):
            raise BadInput("--interleave needs A and B on the same prompts; their task, dataset or --limit differ")
        return _alternate(store, out_dir, pa, pb, blocks_of(len(pa.prompts), blocks))
    finally:
        for p in prepared:
            p.backend.close()


def _alternate(store: Store, out_dir: Path | None, pa: session.Prepared, pb: session.Prepared,
               cuts: Sequence[range]) -> tuple[str, str]:
    with stopping() as stop:
        id_a, id_b = _start(store, pa), _start(store, pb)
        store.set_spec_value(id_a, "interleave", {"with": id_b, "blocks": len(cuts)})
        store.set_spec_value(id_b, "interleave", {"with": id_a, "blocks": len(cuts)})
        sides = {id_a: pa, id_b: pb}
        for p in sides.values():
            warm_up(p.backend, p.prompts, p.config.generation(), p.config.warmup, p.plan, p.config.batch_size,
                    stop=stop)
        finished = True
        for n, positions in enumerate(cuts):
            order = [id_a, id_b] if n % 2 == 0 else [id_b, id_a]
            finished = all(_answer(store, run_id, sides[run_id], positions) for run_id in order)
            if not finished:
                break
        with stop.held():
            for run_id, p in sides.items():
                probe = RunSpec.load(store.get_run(run_id).spec).probe
                if finished and probe is not None:
                    probe_after(store, run_id, probe, p.meter)
                session.finish(store, run_id, out_dir)
    if not finished:
        raise KeyboardInterrupt
    return id_a, id_b
