"""Slowdown of a CPU-bound workload with joulescore's samplers running vs off.

Why: the meter must not change what it measures.  "on" runs the auto-style
composite of a RAPL meter on a fake powercap tree (so its wrap poller really
reads files on a thread) plus the estimator, with a power timeline sampled
on another thread; "on, 10 ms poll" makes the RAPL poller read every 10 ms
(a 20 J counter range) as a worst case.  Each configuration runs the same
workload, interleaved, several times; the median times are compared.
Run: python benchmarks/meter_overhead.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from joulescore.meters.base import Domain
from joulescore.meters.composite import CompositeMeter
from joulescore.meters.estimator import EstimatorMeter
from joulescore.meters.monitor import Monitor
from joulescore.meters.rapl import RaplMeter


def workload(n: int = 12_000_000) -> int:
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


def timed(monitor_factory) -> tuple[float, float]:
    """Seconds for the workload, and the sampler's poll interval (0 if off)."""
    if monitor_factory is None:
        t0 = time.perf_counter()
        workload()
        return time.perf_counter() - t0, 0.0
    mon, interval = monitor_factory()
    mon.begin_window("w")
    t0 = time.perf_counter()
    workload()
    elapsed = time.perf_counter() - t0
    mon.end_window("w")
    mon.close()
    return elapsed, interval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real = fake_tree(Path(tmp) / "real", 262_143_328_850)
        fast = fake_tree(Path(tmp) / "fast", 20_000_000)

        def on(root: Path):
            def make():
                rapl = RaplMeter(root)
                meter = CompositeMeter([(rapl, frozenset({Domain.CPU, Domain.DRAM})),
                                        (EstimatorMeter(), frozenset())])
                return Monitor(meter, timeline_interval_s=0.1), rapl.interval_s
            return make

        configs = {"off": None, "on (RAPL poll 1 s, timeline 0.1 s)": on(real),
                   "on (RAPL poll 10 ms, timeline 0.1 s)": on(fast)}
        times: dict[str, list[float]] = {k: [] for k in configs}
        workload(300_000)  # warm up
        for _ in range(args.repeats):
            for name, factory in configs.items():  # interleaved, so drift hits every config alike
                times[name].append(timed(factory)[0])
    base = statistics.median(times["off"])
    print(f"workload: pure-Python loop, {args.repeats} interleaved repeats, median seconds")
    print(f"{'configuration':<40} {'median s':>9} {'min s':>8} {'slowdown %':>11}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<40} {med:>9.4f} {min(values):>8.4f} {100 * (med - base) / base:>+11.2f}")
    print("target: slowdown < 1%")


if __name__ == "__main__":
    main()
