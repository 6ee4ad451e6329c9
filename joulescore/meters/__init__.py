"""Energy sources behind one interface, and the choice of the best one here."""

from __future__ import annotations

from joulescore.errors import BadInput
from joulescore.meters.base import Domain, Measurement, Meter, MeterStatus, Provenance, Reading
from joulescore.meters.estimator import EstimatorMeter

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

METER_NAMES = ("auto", "estimator")


def meter_statuses() -> list[MeterStatus]:
    """Every energy source joulescore knows, usable here or not, and why."""
    return [EstimatorMeter.status()]


def select_meter(name: str = "auto") -> Meter:
    """The meter to run under: the best available source, or the one asked for."""
    if name not in METER_NAMES:
        raise BadInput(f"unknown meter {name!r}; choose one of: {', '.join(METER_NAMES)}")
    return EstimatorMeter()
