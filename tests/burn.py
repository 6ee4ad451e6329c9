"""Real CPU time for the estimator tests, however fast or busy the machine."""

from __future__ import annotations

from joulescore.meters.estimator import own_cpu_s


def burn_cpu_s(seconds: float) -> float:
    """Spin until this process has used ``seconds`` of CPU time (several clock ticks, so it always registers).

    A fixed loop would not do: on a fast CPU it ends inside one clock tick and reads as no CPU time at all.
    """
    start = own_cpu_s()
    total = 0
    while own_cpu_s() - start < seconds:
        total += sum(i * i for i in range(10_000))
    assert total > 0
    return own_cpu_s() - start
