"""Slowdown of a CPU-bound workload with joulescore's samplers running vs off.

Why: the meter must not change what it measures.  Every "on" configuration
builds the auto-style composite of a RAPL meter on a fake powercap tree (so
its wrap poller really reads files on a thread) plus the estimator:

* "sampler (as joulescore run)": the RAPL wrap poller at the rate the counter
  range asks for (a real 262 kJ package range: the 10 s cap), no timeline;
* "+ timeline 1 s" / "+ timeline 0.1 s": the Python API's optional power
  timeline on another thread as well;
* "worst case: 10 ms poll": a 20 J counter range, so the poller reads every 10 ms.

The workload is a pure-Python loop: it holds the GIL, so every wake-up of a
sampler thread takes the interpreter away from it (the worst case for a
Python sampler; native engines such as llama.cpp release the GIL).  Rounds
run every configuration once, in a shuffled order, so drift and order effects
hit all alike.  The slowdown is the median of per-round (on / off of the same
round) - 1, with a bootstrap 95% interval: on a shared VM single rounds vary
by +/-30%, so it takes hundreds of short rounds to resolve a 1% effect.  Also
shown: the fastest round of each configuration against the fastest off
(min vs min), and the cost of one sampler tick, which bounds the overhead as
wake-ups per second x tick cost, independently of run-to-run noise.

Run on a quiet machine: python benchmarks/meter_overhead.py [--rounds 600 --loop 500000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from joulescore.meters.base import Domain
from joulescore.meters.composite import CompositeMeter
from joulescore.meters.estimator import EstimatorMeter
from joulescore.meters.monitor import Monitor
from joulescore.meters.rapl import RaplMeter

REAL_RANGE_UJ = 262_143_328_850
FAST_RANGE_UJ = 20_000_000


def workload(n: int) -> int:
    """Pure-Python integer work: holds the GIL like a tokenizer or sampler loop would."""
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
    return acc


def fake_tree(root: Path, max_uj: int) -> Path:
    for zone_id, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core"), ("intel-rapl:0:1", "dram")):
        zone = root / zone_id
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"{name}\n")
        (zone / "energy_uj").write_text("12345\n")
        (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return root


def composite(root: Path) -> tuple[CompositeMeter, RaplMeter]:
    rapl = RaplMeter(root)
    return CompositeMeter([(rapl, frozenset({Domain.CPU, Domain.DRAM})), (EstimatorMeter(), frozenset())]), rapl


Factory = Callable[[], Monitor]


def config(root: Path, timeline_s: float | None) -> tuple[Factory, float, float]:
    """A maker of monitors over a fresh composite, and its poll and timeline wake-ups per second."""
    def make() -> Monitor:
        return Monitor(composite(root)[0], timeline_interval_s=timeline_s)
    return make, 1 / RaplMeter(root).interval_s, (1 / timeline_s if timeline_s else 0.0)


def timed(factory: Factory | None, n: int) -> float:
    if factory is None:
        t0 = time.perf_counter()
        workload(n)
        return time.perf_counter() - t0
    mon = factory()
    mon.begin_window("w")
    t0 = time.perf_counter()
    workload(n)
    elapsed = time.perf_counter() - t0
    mon.end_window("w")
    mon.close()
    return elapsed


def tick_cost_s(root: Path) -> tuple[float, float]:
    """Seconds of one wrap-poll tick and of one timeline tick (a full composite read)."""
    meter, rapl = composite(root)
    meter.start()
    try:
        poll = min(timeit.repeat(rapl._update, number=500, repeat=5)) / 500
        sample = min(timeit.repeat(meter.read, number=500, repeat=5)) / 500
    finally:
        meter.stop()
    return poll, sample


def median_ci(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of the median."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=600)
    ap.add_argument("--loop", type=int, default=500_000, help="workload iterations (~0.05 s here)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real = fake_tree(Path(tmp) / "real", REAL_RANGE_UJ)
        fast = fake_tree(Path(tmp) / "fast", FAST_RANGE_UJ)
        grid = {
            "sampler (as joulescore run)": config(real, None),
            "+ timeline 1 s": config(real, 1.0),
            "+ timeline 0.1 s": config(real, 0.1),
            "worst case: 10 ms poll": config(fast, None),
        }
        configs: dict[str, Factory | None] = {"off": None, **{k: v[0] for k, v in grid.items()}}
        rates = {k: (v[1], v[2]) for k, v in grid.items()}
        poll_s, sample_s = tick_cost_s(real)
        workload(300_000)  # warm up
        times: dict[str, list[float]] = {k: [] for k in configs}
        order = list(configs)
        shuffler = random.Random(1)
        for _ in range(args.rounds):
            shuffler.shuffle(order)  # a fixed order would bias whichever runs first or after another
            for name in order:
                times[name].append(timed(configs[name], args.loop))
    off = times["off"]
    print(f"workload: pure-Python loop ({args.loop:,} iterations, holds the GIL), {args.rounds} rounds, "
          f"off median {statistics.median(off):.3f} s")
    print(f"one tick: wrap poll {poll_s * 1e6:.0f} us, timeline sample (composite read) {sample_s * 1e6:.0f} us")
    print(f"{'configuration':<30} {'wake-ups/s':>10} {'min s':>7} {'min vs min %':>13} {'median ratio %':>15}"
          f" {'95% CI':>15} {'round spread %':>16} {'tick bound %':>13}")
    for name, values in times.items():
        ratios = [100 * (v / o - 1) for v, o in zip(values, off)]
        slow = statistics.median(ratios)
        poll_rate, timeline_rate = rates.get(name, (0.0, 0.0))
        rate = poll_rate + timeline_rate
        bound = 100 * (poll_rate * poll_s + timeline_rate * sample_s)
        spread = f"{min(ratios):+.1f}..{max(ratios):+.1f}" if name != "off" else ""
        lo, hi = median_ci(ratios) if name != "off" else (0.0, 0.0)
        ci = f"{lo:+.2f}..{hi:+.2f}" if name != "off" else ""
        fastest = 100 * (min(values) / min(off) - 1)
        print(f"{name:<30} {rate:>10.2f} {min(values):>7.3f} {fastest:>+13.2f} {slow:>+15.2f} {ci:>15} {spread:>16}"
              f" {bound:>13.3f}")
    print("target: slowdown < 1%  (min vs min: fastest round on / fastest off - 1; median ratio: median of "
          "per-round on/off - 1; tick bound: wake-ups/s x tick cost)")


if __name__ == "__main__":
    main()
