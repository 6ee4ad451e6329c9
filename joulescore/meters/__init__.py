"""Energy sources behind one interface, and the choice of the best one here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from joulescore.errors import BadInput, MeterUnavailable
from joulescore.meters.base import Domain, Measurement, Meter, MeterStatus, Provenance, Reading
from joulescore.meters.registry import METER_NAMES, METERS, MeterEntry, auto_parts

if TYPE_CHECKING:
    from joulescore.meters.estimator import EstimatorMeter

__all__ = [
    "Domain",
    "Measurement",
    "Meter",
    "MeterEntry",
    "MeterStatus",
    "MeterUnavailable",
    "Provenance",
    "Reading",
    "EstimatorMeter",
    "METERS",
    "METER_NAMES",
    "meter_statuses",
    "select_meter",
]


def __getattr__(name: str) -> Any:
    """``EstimatorMeter`` on first use: the command line starts without loading the estimator."""
    if name == "EstimatorMeter":
        from joulescore.meters.estimator import EstimatorMeter

        return EstimatorMeter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def meter_statuses() -> list[MeterStatus]:
    """Every energy source joulescore knows, usable here or not, and why."""
    return [row for entry in METERS.values() for row in entry.statuses()]


def _auto(cpu_seconds: Callable[[], float], attribute: bool = True) -> Meter:
    """GPU: NVML (counter > polling > estimate) > amdsmi; CPU/DRAM: RAPL > estimator (registry priority)."""
    from joulescore.meters.composite import CompositeMeter

    parts, notes = auto_parts(cpu_seconds, attribute)
    return CompositeMeter(parts, notes)


def select_meter(name: str = "auto", cpu_seconds: Callable[[], float] | None = None,
                 attribute: bool = True, options: Any = None) -> Meter:
    """The meter to run under: the best available source, or the one asked for.

    ``cpu_seconds`` is what the estimator counts (default: this process and its
    reaped children; ``joulescore measure`` passes the whole process tree).
    ``attribute``: the estimator shares idle power out by the run's share of busy
    CPU time (off where the engine runs outside the counted tree).  ``options``: a scraped meter's
    URL, preset and selector (:class:`joulescore.meters.presets.ScrapeOptions`).
    """
    if cpu_seconds is None:
        from joulescore.meters.estimator import own_cpu_s

        cpu_seconds = own_cpu_s
    if name not in METER_NAMES:
        raise BadInput(f"unknown meter {name!r}; choose one of: {', '.join(METER_NAMES)}")
    given = options.given() if options is not None else []
    if given and (name == "auto" or not METERS[name].takes_options):
        raise BadInput(f"{given[0]} applies only to --meter prometheus or --meter exporter")
    if name == "auto":
        return _auto(cpu_seconds, attribute)
    try:
        return METERS[name].create(cpu_seconds, attribute, options)
    except MeterUnavailable as exc:
        raise BadInput(f"meter {name} is not available here: {exc}") from None
