"""One check of a machine with an NVIDIA GPU, written as one JSON file (not a test).

Sections, in order, within --budget-s (default 480 s: 8 minutes on one H200):

1. ``idle``: idle power from NVML's energy counter and from polled power;
2. ``matmul``: a bf16 matmul load for --load-s seconds; the counter's joules against
   polled power integrated at 10 Hz and 100 Hz (target: within --target-pct, 2 %);
3. ``harness``: SmolLM2-135M-Instruct (the shipped GGUF, loaded through transformers)
   on cuda in bf16 under the AI Energy Score protocol (10 new tokens, 10 warm-up
   prompts), --prompts chat prompts at batch 1, 8 and 64, through joulescore's own
   session API: GPU Wh per 1,000 queries, GPU J/token, tokens/s (and the steady state);
4. ``plain``: the same prompts through a plain ``model.generate`` loop, and the
   harness's tokens/s against it (the harness's overhead).

A section that would overrun the budget is skipped and says so.  Without a usable
NVIDIA GPU (or without CUDA in torch) it exits 1 with one line and writes nothing.
Exit 0 when every section ran, 3 when one failed (its error is in the JSON).
Run: python benchmarks/gpu_check.py --out gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MODEL_ALIAS = "smollm2-135m"
BATCH_SIZES = (1, 8, 64)
NEW_TOKENS = 10  # the AI Energy Score protocol
WARMUP = 10
#: seconds each section is expected to need at most (a section starts only if it fits the budget left)
NEEDS_S = {"idle": 15, "matmul": 35, "harness_batch_1": 90, "harness_batch_8": 45, "harness_batch_64": 45,
           "plain": 90}


class NoGpu(Exception):
    """No NVIDIA GPU this check can use: the one line it exits with."""


# pure pieces (unit-tested without a GPU) -------------------------------------

def counter_vs_polled(counter_j: float, polled_j: float, target_pct: float) -> dict[str, Any]:
    """How far polled power's integral is from the energy counter over the same window."""
    diff = 100.0 * (polled_j - counter_j) / counter_j if counter_j > 0 else None
    return {"counter_j": round(counter_j, 3), "polled_j": round(polled_j, 3),
            "diff_pct": None if diff is None else round(diff, 3), "target_pct": target_pct,
            "within_target": None if diff is None else abs(diff) <= target_pct}


def harness_figures(record: dict[str, Any]) -> dict[str, Any]:
    """The figures the check reports from one run record (``RunRecord.as_json()``)."""
    energy, counts = record.get("energy") or {}, record.get("counts") or {}
    tokens = counts.get("output_tokens") or 0
    gpu_j = energy.get("gpu_j")
    steady = record.get("steady_state") or None
    return {
        "run_id": record.get("run_id"),
        "status": record.get("status"),
        "meter_kind": (record.get("meter") or {}).get("kind"),
        "queries": counts.get("succeeded"),
        "output_tokens": tokens,
        "gpu_wh_per_1000_queries": record.get("gpu_wh_per_1000_queries"),
        "gpu_j_per_token": round(gpu_j / tokens, 6) if gpu_j is not None and tokens else None,
        "j_per_token_all_domains": record.get("j_per_output_token"),
        "wh_per_1000_queries_all_domains": record.get("wh_per_1000_queries"),
        "tokens_per_s": record.get("tokens_per_s"),
        "duration_s": record.get("duration_s"),
        "steady_state": None if steady is None else {k: steady.get(k) for k in
                                                      ("j_per_output_token", "tokens_per_s", "output_tokens")},
        "gpus": [g.get("name") for g in (record.get("hardware") or {}).get("gpus", [])],
    }


def overhead(harness_tps: float | None, plain_tps: float | None) -> dict[str, Any]:
    """The harness's tokens/s as a share of the plain loop's (1.0: no overhead)."""
    if not harness_tps or not plain_tps:
        return {"harness_tokens_per_s": harness_tps, "plain_tokens_per_s": plain_tps, "ratio": None}
    ratio = harness_tps / plain_tps
    return {"harness_tokens_per_s": round(harness_tps, 3), "plain_tokens_per_s": round(plain_tps, 3),
            "ratio": round(ratio, 4), "overhead_pct": round(100.0 * (1.0 - ratio), 2)}


class Budget:
    """Seconds left of the check's budget; a section runs only if its expected need fits."""

    def __init__(self, total_s: float, clock: Any = time.monotonic) -> None:
        self.clock, self.total_s, self.start = clock, total_s, clock()

    def left_s(self) -> float:
        return self.total_s - (self.clock() - self.start)

    def fits(self, need_s: float) -> bool:
        return self.left_s() >= need_s


# the GPU ------------------------------------------------------------------------

def open_gpu() -> tuple[Any, Any, dict[str, Any]]:
    """NVML and the first visible GPU with an energy counter; NoGpu (one line) otherwise."""
    from joulescore.meters.nvml import NvmlUnavailable, import_nvml, probe_gpus

    try:
        nvml = import_nvml()
        nvml.nvmlInit()
        probes, problems = probe_gpus(nvml)
    except (ImportError, OSError, NvmlUnavailable) as exc:
        raise NoGpu(f"NVML unavailable: {exc}") from None
    except Exception as exc:  # pynvml's NVMLError (no driver, no library)
        raise NoGpu(f"NVML unavailable: {exc}") from None
    counters = [p for p in probes if p.method == "counter"]
    if not counters:
        why = "; ".join([f"{p.label} {p.name}: {p.reason}" for p in probes] + problems) or "none visible"
        raise NoGpu(f"no GPU with an NVML energy counter ({why})")
    try:
        import torch
    except ImportError:
        raise NoGpu("torch is not installed (pip install torch)") from None
    if not torch.cuda.is_available():
        raise NoGpu("torch sees no CUDA device")
    gpu = counters[0]
    return nvml, gpu.handle, {"index": gpu.index, "name": gpu.name, "uuid": gpu.uuid, "method": gpu.method}


class Polled:
    """Polled power of one GPU, trapezoid-integrated on a background thread."""

    def __init__(self, nvml: Any, handle: Any, rate_hz: float) -> None:
        self.nvml, self.handle, self.interval_s = nvml, handle, 1.0 / rate_hz
        self.j, self.samples = 0.0, 0
        self._last: tuple[float, float] | None = None
        self._stop = threading.Event()
        self._tick()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        now, w = time.perf_counter(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0
        if self._last is not None:
            self.j += (now - self._last[0]) * (w + self._last[1]) / 2
        self._last, self.samples = (now, w), self.samples + 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._tick()
        return self.j


def energy_j(nvml: Any, handle: Any) -> float:
    import torch

    torch.cuda.synchronize()
    return float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0


def check_idle(nvml: Any, handle: Any, idle_s: float) -> dict[str, Any]:
    polled = Polled(nvml, handle, 100)
    e0, t0 = energy_j(nvml, handle), time.perf_counter()
    time.sleep(idle_s)
    e1, t1 = energy_j(nvml, handle), time.perf_counter()
    p = polled.stop()
    return {"seconds": round(t1 - t0, 3), "counter_w": round((e1 - e0) / (t1 - t0), 3),
            "polled_100hz_w": round(p / (t1 - t0), 3)}


def check_matmul(nvml: Any, handle: Any, load_s: float, n: int, target_pct: float) -> dict[str, Any]:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b  # warm cuBLAS
    torch.cuda.synchronize()
    p10, p100 = Polled(nvml, handle, 10), Polled(nvml, handle, 100)
    e0, t0 = energy_j(nvml, handle), time.perf_counter()
    iters = 0
    while time.perf_counter() - t0 < load_s:
        for _ in range(20):
            a @ b
        iters += 20
        torch.cuda.synchronize()
    e1, t1 = energy_j(nvml, handle), time.perf_counter()
    j10, j100 = p10.stop(), p100.stop()
    del a, b
    torch.cuda.empty_cache()
    truth, seconds = e1 - e0, t1 - t0
    tflop = 2.0 * n ** 3 * iters / 1e12
    return {"n": n, "iterations": iters, "seconds": round(seconds, 3), "tflop_per_s": round(tflop / seconds, 2),
            "counter_w": round(truth / seconds, 2), "j_per_tflop": round(truth / tflop, 4),
            "polled_10hz": counter_vs_polled(truth, j10, target_pct),
            "polled_100hz": counter_vs_polled(truth, j100, target_pct)}


def run_harness(batch_size: int, prompts: int) -> dict[str, Any]:
    """One joulescore run through the session API, as ``joulescore run`` makes it."""
    from joulescore.bench.session import start
    from joulescore.model.config import RunConfig
    from joulescore.store.sqlite import Store

    config = RunConfig.model_validate({"model": MODEL_ALIAS, "task": "chat", "backend": "transformers",
                                       "dtype": "bf16", "device": "cuda", "batch_size": batch_size,
                                       "limit": prompts, "max_new_tokens": NEW_TOKENS, "warmup": WARMUP})
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "gpu_check.db")
        t0 = time.perf_counter()
        record, _ = start(config, store, None)
        wall = time.perf_counter() - t0
    return {**harness_figures(record.as_json()), "wall_s_with_load": round(wall, 2)}


def run_plain(prompts: int, batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """The same prompts, grouped the same way, through ``model.generate`` alone: tokens/s per batch size."""
    import torch

    from joulescore.backends.hf_common import encode_batch, load_gguf
    from joulescore.tasks.prompts import load_prompts
    from joulescore.tasks.spec import load_spec

    loaded = load_gguf(MODEL_ALIAS, torch.bfloat16)
    model, tok = loaded.model.to("cuda"), loaded.tokenizer
    chats = [p.messages for p in load_prompts(load_spec("chat"))[0][:prompts]]
    kwargs = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False,
              "temperature": None, "top_k": None, "top_p": None, "pad_token_id": loaded.pad_id}
    out: dict[str, Any] = {}

    def generate(group: list[list[dict[str, str]]]) -> int:
        ids, mask, _ = encode_batch(tok, group)
        with torch.inference_mode():
            gen = model.generate(input_ids=torch.from_numpy(ids).to("cuda"),
                                 attention_mask=torch.from_numpy(mask).to("cuda"), **kwargs)
        return int(gen.shape[0] * (gen.shape[1] - ids.shape[1]))

    for size in batch_sizes:
        for i in range(0, WARMUP, size):  # the harness warms up on the same number of prompts
            generate(chats[i:min(WARMUP, i + size)])
        torch.cuda.synchronize()
        t0, tokens = time.perf_counter(), 0
        for i in range(0, len(chats), size):
            tokens += generate(chats[i:i + size])
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        out[f"batch_{size}"] = {"output_tokens": tokens, "seconds": round(seconds, 3),
                                "tokens_per_s": round(tokens / seconds, 3)}
    return out


# the check ------------------------------------------------------------------------

def section(report: dict[str, Any], name: str, budget: Budget, fn: Any, *args: Any) -> Any:
    """Run one section into the report, unless it would overrun the budget; errors are recorded."""
    if not budget.fits(NEEDS_S[name]):
        report["sections"][name] = {"skipped": f"{budget.left_s():.0f} s of budget left, needs ~{NEEDS_S[name]} s"}
        return None
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as exc:  # one section's failure is reported, the others still run
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        report["sections"][name] = {"error": f"{type(exc).__name__}: {first}"}
        return None
    report["sections"][name] = {**result, "section_s": round(time.perf_counter() - t0, 2)}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON file to write")
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--load-s", type=float, default=20.0)
    ap.add_argument("--n", type=int, default=8192, help="matmul size")
    ap.add_argument("--target-pct", type=float, default=2.0)
    ap.add_argument("--prompts", type=int, default=200)
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s)
    try:
        nvml, handle, gpu = open_gpu()
    except NoGpu as exc:
        print(f"gpu_check: no usable NVIDIA GPU: {exc}", file=sys.stderr)
        return 1
    import torch

    report: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": {**gpu, "driver": str(nvml.nvmlSystemGetDriverVersion()), "torch": torch.__version__,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")},
        "protocol": {"model": "SmolLM2-135M-Instruct (GGUF through transformers, bf16, cuda)", "task": "chat",
                     "prompts": args.prompts, "new_tokens": NEW_TOKENS, "warmup": WARMUP},
        "sections": {},
    }
    section(report, "idle", budget, check_idle, nvml, handle, args.idle_s)
    section(report, "matmul", budget, check_matmul, nvml, handle, args.load_s, args.n, args.target_pct)
    harness = {f"batch_{b}": section(report, f"harness_batch_{b}", budget, run_harness, b, args.prompts)
               for b in BATCH_SIZES}
    plain = section(report, "plain", budget, run_plain, args.prompts, BATCH_SIZES) or {}
    report["harness_vs_plain"] = {
        "note": "harness tokens/s: output tokens over its measured windows (meter reads inside, store writes "
                "between prompts outside); plain: the same grouping's wall time through model.generate alone",
        **{k: overhead((h or {}).get("tokens_per_s"), (plain.get(k) or {}).get("tokens_per_s"))
           for k, h in harness.items()},
    }
    report["total_s"] = round(args.budget_s - budget.left_s(), 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"gpu_check: wrote {args.out} in {report['total_s']} s")
    failed = [k for k, v in report["sections"].items() if "error" in v or "skipped" in v]
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
