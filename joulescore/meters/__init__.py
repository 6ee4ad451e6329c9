"""Energy sources behind one interface, and the choice of the best one here."""

from __future__ import annotations

from collections.abc import Callable

from joulescore.errors import BadInput
from joulescore.meters.base import Domain, Measurement, Meter, MeterStatus, Provenance, Reading
from joulescore.meters.estimator import EstimatorMeter, own_cpu_s

__all__ = [
    "Domain",
    "Measurement",
    "Meter",
    "MeterStatus",
    "Provenance",
    "Reading",
    "EstimatorMeter",
    "meter_statuses",
    "select_meter",
]

METER_NAMES = ("auto", "nvml", "rapl", "amdsmi", "estimator")


def meter_statuses() -> list[MeterStatus]:
    """Every energy source joulescore knows, usable here or not, and why."""
    from joulescore.meters import amdsmi_meter, nvml, rapl

    return [*nvml.statuses(), amdsmi_meter.status(), rapl.status(), EstimatorMeter.status()]


def _auto(cpu_seconds: Callable[[], float]) -> Meter:
    """GPU: NVML (counter > polling > estimate) and amdsmi; CPU/DRAM: RAPL > estimator."""
    from joulescore.meters import amdsmi_meter, nvml, rapl
    from joulescore.meters.composite import CompositeMeter

    parts: list[tuple[Meter, frozenset[Domain]]] = []
    notes: list[str] = []
    gpu_reasons = []
    for factory, unavailable in ((nvml.NvmlMeter, nvml.NvmlUnavailable),
                                 (amdsmi_meter.AmdSmiMeter, amdsmi_meter.AmdSmiUnavailable)):
        try:
            parts.append((factory(), frozenset({Domain.GPU})))
        except unavailable as exc:
            gpu_reasons.append(f"{factory.name}: {exc}")
    if not any(Domain.GPU in d for _, d in parts):
        notes.append(f"gpu not covered ({'; '.join(gpu_reasons)})")
    left = {Domain.CPU, Domain.DRAM}
    try:
        meter = rapl.RaplMeter()
        covered = frozenset({z.domain for z in meter.counted if z.domain is not None})
        parts.append((meter, covered))
        left -= covered
    except rapl.RaplUnavailable as exc:
        notes.append(f"RAPL unavailable, CPU/DRAM estimated instead: {exc}")
    if left:
        parts.append((EstimatorMeter(cpu_seconds=cpu_seconds), frozenset(left)))
    return CompositeMeter(parts, notes)


def select_meter(name: str = "auto", cpu_seconds: Callable[[], float] = own_cpu_s) -> Meter:
    """The meter to run under: the best available source, or the one asked for.

    ``cpu_seconds`` is what the estimator counts (default: this process and its
    reaped children; ``joulescore measure`` passes the whole process tree).
    """
    from joulescore.meters import amdsmi_meter, nvml, rapl

    if name not in METER_NAMES:
        raise BadInput(f"unknown meter {name!r}; choose one of: {', '.join(METER_NAMES)}")
    if name == "auto":
        return _auto(cpu_seconds)
    if name == "estimator":
        return EstimatorMeter(cpu_seconds=cpu_seconds)
    factories = {"nvml": (nvml.NvmlMeter, nvml.NvmlUnavailable),
                 "rapl": (rapl.RaplMeter, rapl.RaplUnavailable),
                 "amdsmi": (amdsmi_meter.AmdSmiMeter, amdsmi_meter.AmdSmiUnavailable)}
    factory, unavailable = factories[name]
    try:
        return factory()
    except unavailable as exc:
        raise BadInput(f"meter {name} is not available here: {exc}") from None
