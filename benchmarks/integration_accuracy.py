"""Polling + trapezoid integration vs the counter's truth, on synthetic power traces.

Why: when a GPU has no energy counter, joulescore integrates sampled power.
This shows how far that integral strays from the true energy at 10 Hz and
100 Hz sampling, with realistic thread jitter, on steps, ramps and spikes.
"Truth" is the exact integral of the trace (what a perfect energy counter
would report).  Samples are instantaneous power; NVML's own averaging is not
modelled.  Run: python benchmarks/integration_accuracy.py [--duration-s 60]
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable

from joulescore.meters.nvml import _Integral

Trace = Callable[[float], float]


def steps(t: float) -> float:
    """Load changes every 1.3 s between idle, prefill-like and decode-like levels."""
    return (80.0, 450.0, 250.0, 600.0)[int(t / 1.3) % 4]


def ramps(t: float) -> float:
    """Sawtooth ramps 100 -> 650 W over 4 s."""
    return 100.0 + 550.0 * ((t % 4.0) / 4.0)


def spikes(t: float) -> float:
    """A 200 W base with 30 ms spikes to 700 W every 0.77 s (short kernels)."""
    return 700.0 if (t % 0.77) < 0.03 else 200.0


def mixed(t: float) -> float:
    """Steps plus a 2 Hz ripple."""
    return steps(t) + 40.0 * math.sin(2 * math.pi * 2.0 * t)


def truth_j(trace: Trace, duration_s: float, dt_s: float = 1e-5) -> float:
    """The exact energy, integrated on a grid far finer than any feature of the traces."""
    n = int(duration_s / dt_s)
    return sum(trace((i + 0.5) * dt_s) for i in range(n)) * dt_s


def polled_j(trace: Trace, duration_s: float, rate_hz: float, jitter: float, rng: random.Random) -> float:
    """Trapezoid integral of samples taken at rate_hz with +/- jitter of the period, plus both window ends."""
    integral = _Integral()
    integral.add(0.0, (trace(0.0),) * 3)
    period = 1.0 / rate_hz
    t = 0.0
    while True:
        t += period * (1.0 + rng.uniform(-jitter, jitter))
        if t >= duration_s:
            break
        integral.add(t, (trace(t),) * 3)
    integral.add(duration_s, (trace(duration_s),) * 3)  # the meter samples at every read
    return integral.j[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--jitter", type=float, default=0.1, help="sampling jitter, share of the period")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"window {args.duration_s:.0f} s, jitter +/-{args.jitter * 100:.0f}% of the period; error = polled vs exact")
    print(f"{'trace':<8} {'truth J':>12} {'10 Hz J':>12} {'err %':>8} {'100 Hz J':>12} {'err %':>8}")
    worst = {10: 0.0, 100: 0.0}
    for name, trace in (("steps", steps), ("ramps", ramps), ("spikes", spikes), ("mixed", mixed)):
        true = truth_j(trace, args.duration_s)
        row = [f"{name:<8} {true:>12.1f}"]
        for hz in (10, 100):
            got = polled_j(trace, args.duration_s, hz, args.jitter, rng)
            err = 100.0 * (got - true) / true
            worst[hz] = max(worst[hz], abs(err))
            row.append(f"{got:>12.1f} {err:>+8.3f}")
        print(" ".join(row))
    print(f"worst |error|: 10 Hz {worst[10]:.3f}%, 100 Hz {worst[100]:.3f}% (target <= 1%)")


if __name__ == "__main__":
    main()
