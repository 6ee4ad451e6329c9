"""The one small interface every energy source implements.

Every meter is read as a set of *cumulative* counters, one per energy domain,
the way NVML's total-energy counter and RAPL's ``energy_uj`` already work.  A
window is the difference of two readings, so the runner can cut a run into
prompts and phases (prefill, decode) by reading the meter at each boundary,
and the pieces always add up to the whole.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

MeterKind = Literal["measured", "estimated"]


class Domain(str, Enum):
    """What a joule figure covers.  These are different things and never mixed."""

    CPU = "cpu"
    DRAM = "dram"
    GPU = "gpu"
    SYSTEM = "system"


@dataclass(frozen=True)
class Reading:
    """One snapshot of a meter's cumulative counters.

    ``energy_j`` is the best value; ``low_j``/``high_j`` bound it (equal to
    ``energy_j`` for a measured counter, a band for an estimate).
    """

    timestamp_s: float
    energy_j: dict[Domain, float]
    low_j: dict[Domain, float]
    high_j: dict[Domain, float]


@dataclass(frozen=True)
class Provenance:
    """Where a figure came from and what it covers."""

    kind: MeterKind
    sources: tuple[str, ...]
    includes: tuple[str, ...]
    uncertainty_pct: float
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "sources": list(self.sources),
            "includes": list(self.includes),
            "uncertainty_pct": round(self.uncertainty_pct, 2),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Measurement:
    """Energy spent in one window, by domain, with its provenance."""

    duration_s: float
    energy_j: dict[Domain, float]
    low_j: dict[Domain, float]
    high_j: dict[Domain, float]
    provenance: Provenance
    name: str = ""

    @property
    def total_j(self) -> float:
        return sum(self.energy_j.values())

    @property
    def total_low_j(self) -> float:
        return sum(self.low_j.values())

    @property
    def total_high_j(self) -> float:
        return sum(self.high_j.values())

    @property
    def measured(self) -> bool:
        return self.provenance.kind == "measured"

    @property
    def avg_power_w(self) -> float:
        return self.total_j / self.duration_s if self.duration_s > 0 else 0.0

    def domain_j(self, domain: Domain) -> float | None:
        """Energy for one domain, or None when this meter does not cover it."""
        return self.energy_j.get(domain)


def _diff(a: dict[Domain, float], b: dict[Domain, float]) -> dict[Domain, float]:
    return {d: b[d] - a.get(d, 0.0) for d in b}


@dataclass
class MeterStatus:
    """One row of ``joulescore meters``: is this source usable here, and why not."""

    name: str
    available: bool
    reason: str
    covers: tuple[str, ...] = ()
    resolution: str = ""
    kind: MeterKind = "measured"


class Meter(ABC):
    """An energy source read as cumulative per-domain counters."""

    name: str = "meter"

    @abstractmethod
    def provenance(self) -> Provenance:
        """What this meter's figures are: measured or estimated, and of what."""

    @abstractmethod
    def read(self) -> Reading:
        """Read every counter now.  Must be cheap: it is called at each phase boundary."""

    def start(self) -> None:
        """Begin sampling (for meters that poll).  Default: nothing to do."""

    def stop(self) -> None:
        """Stop sampling and release the hardware handle."""

    def measurement(self, begin: Reading, end: Reading, name: str = "") -> Measurement:
        """The energy spent between two readings of this meter."""
        return Measurement(
            duration_s=end.timestamp_s - begin.timestamp_s,
            energy_j=_diff(begin.energy_j, end.energy_j),
            low_j=_diff(begin.low_j, end.low_j),
            high_j=_diff(begin.high_j, end.high_j),
            provenance=self.provenance(),
            name=name,
        )

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Window:
    """An open measurement window: the reading it started from."""

    name: str
    begin: Reading
    children: list[Measurement] = field(default_factory=list)


def now_s() -> float:
    """The clock every meter stamps its readings with."""
    return time.perf_counter()
