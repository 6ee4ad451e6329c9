"""The machine speed probe: a fixed, short CPU workload timed before and after every run.

The estimator follows CPU time, and the same work can take longer an hour later (another tenant on the
host, a lower clock, a noisy cache).  Two runs of one model then differ though the model did not change.
The probe does the same fixed work each time (SHA-256 over a buffer and a pure-Python loop: one core, no
threads, no BLAS), so its time moving between two runs says the machine moved, and by how much.
``compare`` reports the ratio of the probes and flags a comparison whose machine moved past the threshold.

Its time is the median of a few repetitions (a momentary hiccup is not drift), as process CPU time (what
the estimator charges) and wall time; its energy is read from the run's own meter.
"""

from __future__ import annotations

import hashlib
import statistics
import time

from joulescore.meters.base import Meter
from joulescore.model.spec import SpeedProbe
from joulescore.store.sqlite import Store

#: the workload, in words, stored with each probe: a different workload is a different probe
WORKLOAD = "sha256 over 8 x 1 MiB, then 150,000 integer steps in Python; x3, median of 5"
REPEATS = 5
_BUFFER = bytes(range(256)) * 4096  # 1 MiB


def _work() -> int:
    total = 0
    for _ in range(3):
        digest = hashlib.sha256()
        for _ in range(8):
            digest.update(_BUFFER)
        for i in range(150_000):
            total += (i * i) % 7
    return total


def timed_probe() -> tuple[float, float]:
    """Median process CPU seconds and wall seconds of the workload over :data:`REPEATS` runs."""
    cpu, wall = [], []
    for _ in range(REPEATS):
        c0, w0 = time.process_time(), time.perf_counter()
        _work()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def measure_probe(meter: Meter) -> tuple[float, float, float]:
    """The probe's CPU seconds, wall seconds and energy (J) under ``meter`` (started and stopped here, as the
    idle baseline does)."""
    meter.start()
    try:
        begin = meter.read()
        cpu_s, wall_s = timed_probe()
        end = meter.read()
    finally:
        meter.stop()
    m = meter.measurement(begin, end)
    # the energy is of the whole window: REPEATS runs of the workload; kept per run like the times
    return round(cpu_s, 6), round(wall_s, 6), round(m.total_j / REPEATS, 6)


def probe_before(meter: Meter) -> SpeedProbe:
    """The spec's ``probe`` as the run starts: each figure as a list, [before] now, [before, after] later."""
    cpu_s, wall_s, energy_j = measure_probe(meter)
    return SpeedProbe(workload=WORKLOAD, meter_kind=meter.provenance().kind, cpu_s=[cpu_s], wall_s=[wall_s],
                      energy_j=[energy_j])


def probe_after(store: Store, run_id: str, before: SpeedProbe, meter: Meter) -> None:
    """Time the probe again once the run has answered, and store [before, after] with the run."""
    cpu_s, wall_s, energy_j = measure_probe(meter)
    after = before.model_copy(update={"cpu_s": [*before.cpu_s[:1], cpu_s], "wall_s": [*before.wall_s[:1], wall_s],
                                      "energy_j": [*before.energy_j[:1], energy_j]})
    store.set_spec_value(run_id, "probe", after.model_dump(mode="json", exclude_unset=True))
