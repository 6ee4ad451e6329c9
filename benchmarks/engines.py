"""Per engine: tokens/s and J/token through joulescore, and tokens/s of the engine's own plain loop.

The plain loop is what a user would write without joulescore: llama-cpp-python's
``create_chat_completion``, transformers' ``model.generate`` on the left-padded
batch, and for ONNX Runtime (which has no generate API) the engine's own KV-cache
loop called directly.  The harness run adds meter reads, per-batch commits and
token attribution.  Both use the same loaded model, prompts and settings
(energy-score protocol: greedy, exactly 10 new tokens); within each round the
two take turns batch by batch, so drift on a shared machine hits both alike.

    python benchmarks/engines.py [--prompts 20] [--rounds 3] [--batch-size 1]

``--builds`` compares two llama.cpp builds instead: the fast one the set-up picks for this CPU and the
portable AVX2 one (joulescore/backends/cpu_build.py), each in its own worker process (two builds of the
same shared library cannot share a process), taking turns round by round (ABBA order), each round a
fresh harness run of the same prompts: tok/s and Wh per 1,000 queries side by side.  A build whose wheel
is not in the set-up's wheel folder yet is built first (a few minutes).

    python benchmarks/engines.py --builds [--prompts 100] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from joulescore import __version__
from joulescore.backends.base import Backend
from joulescore.bench.runner import batches_of, run_pending
from joulescore.bench.session import prepare, run_spec
from joulescore.model.config import RunConfig
from joulescore.store.record import build_record
from joulescore.store.sqlite import Store

ENGINES: list[tuple[str, dict[str, str]]] = [
    ("llama.cpp", {}),
    ("transformers", {"dtype": "fp32"}),
    ("transformers", {"quantization": "int8"}),
    ("onnxruntime", {}),
    ("onnxruntime", {"quantization": "int8"}),
]


def plain_loop(backend: Backend, messages: list[list[dict[str, str]]], config: RunConfig) -> Callable[[], int]:
    """A closure answering every prompt with the engine's own API; returns output tokens."""
    gen = config.generation()
    if backend.name == "llama.cpp":
        import numpy as np
        from llama_cpp import LogitsProcessorList

        banned = np.fromiter(backend._eog, dtype=np.int64)  # type: ignore[attr-defined]

        def ban(_ids: object, scores: np.ndarray) -> np.ndarray:
            scores[banned] = -np.inf  # min_new_tokens = max_new_tokens
            return scores

        def run_llama() -> int:
            return sum(backend.llm.create_chat_completion(  # type: ignore[attr-defined]
                messages=m, max_tokens=gen.max_new_tokens, temperature=0.0, top_k=40, top_p=0.95, min_p=0.05,
                repeat_penalty=1.0, logits_processor=LogitsProcessorList([ban]))["usage"]["completion_tokens"]
                for m in messages)
        return run_llama
    if backend.name == "transformers":
        import torch

        from joulescore.backends.hf_common import encode_batch

        def run_hf() -> int:
            tokens = 0
            for group in batches_of(messages, config.batch_size):  # type: ignore[arg-type]
                ids, mask, _ = encode_batch(backend.tokenizer, group)  # type: ignore[attr-defined]
                with torch.inference_mode():
                    out = backend.model.generate(  # type: ignore[attr-defined]
                        input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                        max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens, do_sample=False,
                        temperature=None, top_k=None, top_p=None, pad_token_id=backend.pad_id)  # type: ignore[attr-defined]
                tokens += (out.shape[1] - ids.shape[1]) * len(group)
            return tokens
        return run_hf

    def run_direct() -> int:
        return sum(g.output_tokens for group in batches_of(messages, config.batch_size)  # type: ignore[arg-type]
                   for g in backend.generate_batch(group, gen))
    return run_direct


def paired_round(p: object, db: Path, flip: bool) -> tuple[float, float, dict]:
    """One pass over the prompts, plain loop and harness taking turns batch by batch.

    Taking turns every batch (ABBA order) puts both loops under the same
    moment-to-moment speed of a shared machine, so the ratio is not the
    difference between two noisy periods.  Returns plain and harness tokens/s
    and the harness run's record.
    """
    config: RunConfig = p.config  # type: ignore[attr-defined]
    store = Store(db)
    run_id = f"bench-{time.time_ns()}"
    store.create_run(run_id, len(p.prompts), run_spec(p))  # type: ignore[attr-defined]
    plain_s = harness_s = 0.0
    plain_tokens = 0
    for i, group in enumerate(batches_of(p.prompts, config.batch_size)):  # type: ignore[attr-defined]
        plain = plain_loop(p.backend, [q.messages for q in group], config)  # type: ignore[attr-defined]

        def run_plain() -> None:
            nonlocal plain_s, plain_tokens
            t0 = time.perf_counter()
            plain_tokens += plain()  # noqa: B023  (called in this same iteration)
            plain_s += time.perf_counter() - t0

        def run_harness() -> None:
            nonlocal harness_s
            t0 = time.perf_counter()
            run_pending(store, run_id, p.backend, p.meter, group, config.generation(),  # type: ignore[attr-defined]  # noqa: B023  (called in this same iteration)
                        batch_size=config.batch_size)
            harness_s += time.perf_counter() - t0

        first, second = (run_plain, run_harness) if (i % 2 == 0) != flip else (run_harness, run_plain)
        first()
        second()
    record = build_record(store.get_run(run_id), store.results(run_id), __version__).as_json()
    store.close()
    return plain_tokens / plain_s, record["counts"]["output_tokens"] / harness_s, record


def build_worker(prompts: int) -> None:
    """One build's side of ``--builds``: load once, then answer a harness round per line on stdin."""
    from joulescore.backends.cpu_build import built_isa

    config = RunConfig(model="smollm2-135m", task="chat", backend="llama.cpp", limit=prompts, warmup=0)
    p = prepare(config)
    plain_loop(p.backend, [q.messages for q in p.prompts[:2]], config)()  # warm caches and clocks once
    print(json.dumps({"isa": built_isa()}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, _line in enumerate(sys.stdin):
            store = Store(Path(tmp) / f"round-{i}.db")
            run_id = f"bench-{time.time_ns()}"
            store.create_run(run_id, len(p.prompts), run_spec(p))
            t0 = time.perf_counter()
            run_pending(store, run_id, p.backend, p.meter, p.prompts, config.generation())
            wall_s = time.perf_counter() - t0
            record = build_record(store.get_run(run_id), store.results(run_id), __version__).as_json()
            store.close()
            print(json.dumps({"tok_s": record["counts"]["output_tokens"] / wall_s, "wall_s": wall_s,
                              "wh_per_1000_queries": record["wh_per_1000_queries"],
                              "meter": record["meter"]["kind"]}), flush=True)
    p.backend.close()


def build_site(name: str, tmp: Path) -> Path:
    """A folder holding the ``fast`` or ``portable`` llama-cpp-python build, built into the wheel folder if new."""
    from joulescore.backends.cpu_build import LLAMA_SPEC, cmake_args, wheel_dir

    spec = os.environ.get("LLAMA_SPEC", LLAMA_SPEC)
    cmake = " ".join(cmake_args(name))
    wheels = wheel_dir(spec, cmake)
    if not list(wheels.glob("llama_cpp_python-*.whl")):
        print(f"building the {name} wheel ({cmake}) into {wheels}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "--no-binary",
                        "llama-cpp-python", "-w", str(wheels), spec], check=True, env={**os.environ, "CMAKE_ARGS": cmake})
    site = tmp / name
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    *map(str, wheels.glob("llama_cpp_python-*.whl"))], check=True)
    return site


def compare_builds(prompts: int, rounds: int, sites: dict[str, str]) -> None:
    """The fast and the portable build, rounds taken in turn (ABBA), through the harness on the same prompts."""
    root = Path(__file__).resolve().parents[1]
    names = ("fast", "portable")
    rows: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        workers, isa = {}, {}
        for name in names:
            site = sites.get(name) or str(build_site(name, Path(tmp)))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, str(root)])}
            workers[name] = subprocess.Popen([sys.executable, __file__, "--build-worker", "--prompts", str(prompts)],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            isa[name] = json.loads(workers[name].stdout.readline())["isa"]  # type: ignore[union-attr]
        for i in range(rounds):
            for name in (names if i % 2 == 0 else names[::-1]):
                worker = workers[name]
                worker.stdin.write("round\n")  # type: ignore[union-attr]
                worker.stdin.flush()  # type: ignore[union-attr]
                rows[name].append(json.loads(worker.stdout.readline()))  # type: ignore[union-attr]
        for worker in workers.values():
            worker.stdin.close()  # type: ignore[union-attr]
            worker.wait()
    table = Table(title=f"llama.cpp builds: {prompts} chat prompts x {rounds} rounds, SmolLM2-135M, energy-score "
                        "protocol, batch 1, builds taking turns round by round")
    for col in ("build", "instruction sets", "tok/s", "Wh/1,000 queries", "per round tok/s", "meter"):
        table.add_column(col, justify="right" if col in ("tok/s", "Wh/1,000 queries") else "left")
    for name in names:
        tok = [r["tok_s"] for r in rows[name]]
        table.add_row(name, isa[name], f"{statistics.median(tok):.1f}",
                      f"{statistics.median(r['wh_per_1000_queries'] for r in rows[name]):.3g}",
                      " ".join(f"{t:.1f}" for t in tok), rows[name][0]["meter"])
    Console(width=220).print(table)
    ratios = [f["tok_s"] / p["tok_s"] for f, p in zip(rows["fast"], rows["portable"])]
    print(f"fast/portable tok/s: median {statistics.median(ratios):.3f} (rounds: "
          f"{' '.join(f'{r:.3f}' for r in ratios)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--engines", nargs="*", default=None,
                        help="only these (llama.cpp, transformers, transformers-int8, onnxruntime, onnxruntime-int8)")
    parser.add_argument("--builds", action="store_true", help="compare the fast and the portable llama.cpp build")
    parser.add_argument("--site", action="append", default=[], metavar="BUILD=DIR",
                        help="with --builds: take BUILD (fast or portable) from a folder holding an installed llama_cpp")
    parser.add_argument("--build-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_worker:
        build_worker(args.prompts)
        return
    if args.builds:
        compare_builds(args.prompts, args.rounds, dict(s.split("=", 1) for s in args.site))
        return

    table = Table(title=f"engines: {args.prompts} chat prompts, SmolLM2-135M, energy-score protocol, "
                        f"batch {args.batch_size}, {args.rounds} rounds, plain and harness taking turns per batch")
    for col in ("engine", "plain tok/s", "harness tok/s", "harness/plain", "per round", "J/token", "energy"):
        table.add_column(col, justify="left" if col in ("engine", "energy", "per round") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in ENGINES:
            if args.engines and "-".join([name, *settings.values()]).replace("-fp32", "") not in args.engines:
                continue
            config = RunConfig(model="smollm2-135m", task="chat", backend=name, limit=args.prompts, warmup=0,
                               batch_size=args.batch_size, **settings)
            p = prepare(config)
            messages = [q.messages for q in p.prompts]
            plain_loop(p.backend, messages[: args.batch_size], config)()  # warm caches and clocks once
            plain_rates, harness_rates, jpt = [], [], []
            for i in range(args.rounds):
                plain_rate, harness_rate, record = paired_round(p, Path(tmp) / f"{name}-{i}.db", flip=i % 2 == 1)
                plain_rates.append(plain_rate)
                harness_rates.append(harness_rate)
                jpt.append(record["j_per_output_token"])
                kind = f"{record['meter']['kind']} (cpu+dram)" if record["energy"]["gpu_j"] is None \
                    else record["meter"]["kind"]
            p.backend.close()
            label = f"{name} {p.backend.info().quantization}"
            ratios = [h / q for h, q in zip(harness_rates, plain_rates)]
            table.add_row(label, f"{statistics.median(plain_rates):.1f}", f"{statistics.median(harness_rates):.1f}",
                          f"{statistics.median(ratios):.3f}", " ".join(f"{r:.3f}" for r in ratios),
                          f"{statistics.median(jpt):.3f}", kind)
            Console(stderr=True).print(f"{label}: plain {plain_rates}, harness {harness_rates}")
    Console(width=200).print(table)
    print("harness/plain: median of the rounds' ratios; >= 0.97 is the target")


if __name__ == "__main__":
    main()
