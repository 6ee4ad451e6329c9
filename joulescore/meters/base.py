"""The one small interface every energy source implements.

Every meter is read as a set of *cumulative* counters, one per energy domain,
the way NVML's total-energy counter and RAPL's ``energy_uj`` already work.  A
window is the difference of two readings, so the runner can cut a run into
prompts and phases (prefill, decode) by reading the meter at each boundary,
and the pieces always add up to the whole.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

#: "mixed": some domains measured, some estimated; the per-domain detail is in
#: ``Provenance.domains``.  Only an all-measured meter may say "measured".
MeterKind = Literal["measured", "estimated", "mixed"]


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
    ``energy_j`` for a measured counter, a band for an estimate).  ``detail_j``
    holds cumulative counters below a domain (one per GPU or CPU package, e.g.
    ``"gpu0"``); they are already inside ``energy_j`` and never added to it.
    """

    timestamp_s: float
    energy_j: dict[Domain, float]
    low_j: dict[Domain, float]
    high_j: dict[Domain, float]
    detail_j: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Where a figure came from and what it covers."""

    kind: MeterKind
    sources: tuple[str, ...]
    includes: tuple[str, ...]
    uncertainty_pct: float
    notes: tuple[str, ...] = ()
    #: per domain: {"kind": "measured"|"estimated", "source": "..."}
    domains: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind,
            "sources": list(self.sources),
            "includes": list(self.includes),
            "uncertainty_pct": round(self.uncertainty_pct, 2),
            "notes": list(self.notes),
        }
        if self.domains:
            out["per_domain"] = {d: dict(v) for d, v in self.domains.items()}
        return out


@dataclass(frozen=True)
class Measurement:
    """Energy spent in one window, by domain, with its provenance."""

    duration_s: float
    energy_j: dict[Domain, float]
    low_j: dict[Domain, float]
    high_j: dict[Domain, float]
    provenance: Provenance
    name: str = ""
    detail_j: dict[str, float] = field(default_factory=dict)

    @classmethod
    def between(cls, begin: Reading, end: Reading, provenance: Provenance, name: str = "") -> Measurement:
        """Two readings' difference as they stand, waiting for nothing: a scraped meter's readings may still be
        revised (its ``measurement`` waits for that); the proxy's ledger settles them later."""
        return cls(duration_s=end.timestamp_s - begin.timestamp_s, energy_j=_diff(begin.energy_j, end.energy_j),
                   low_j=_diff(begin.low_j, end.low_j), high_j=_diff(begin.high_j, end.high_j),
                   provenance=provenance, name=name,
                   detail_j={k: v - begin.detail_j.get(k, 0.0) for k, v in end.detail_j.items()})

    @classmethod
    def empty(cls, provenance: Provenance) -> Measurement:
        """No time and no energy: the start of a sum of windows."""
        return cls(0.0, {}, {}, {}, provenance)

    def scaled(self, share: float) -> Measurement:
        """A share of this window (a batch row's, or a request's part of a proxy interval)."""
        return Measurement(self.duration_s * share, _times(self.energy_j, share), _times(self.low_j, share),
                           _times(self.high_j, share), self.provenance, self.name,
                           {k: v * share for k, v in self.detail_j.items()})

    def plus(self, other: Measurement, share: float = 1.0) -> Measurement:
        """This window and ``share`` of another, added domain by domain (the sums a ledger keeps)."""
        part = other.scaled(share) if share != 1.0 else other
        return Measurement(self.duration_s + part.duration_s, _add(self.energy_j, part.energy_j),
                           _add(self.low_j, part.low_j), _add(self.high_j, part.high_j), self.provenance, self.name,
                           {k: self.detail_j.get(k, 0.0) + part.detail_j.get(k, 0.0)
                            for k in self.detail_j.keys() | part.detail_j.keys()})

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

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures, each domain marked measured or estimated."""
        prov = self.provenance
        per = prov.domains
        return {
            "name": self.name,
            "kind": prov.kind,
            "duration_s": round(self.duration_s, 6),
            "energy_j": {d.value: round(v, 6) for d, v in self.energy_j.items()},
            "low_j": {d.value: round(v, 6) for d, v in self.low_j.items()},
            "high_j": {d.value: round(v, 6) for d, v in self.high_j.items()},
            "domain_kind": {d.value: per.get(d.value, {}).get("kind", prov.kind) for d in self.energy_j},
            "detail_j": {k: round(v, 6) for k, v in self.detail_j.items()},
            "total_j": round(self.total_j, 6),
            "avg_power_w": round(self.avg_power_w, 6),
            "provenance": prov.as_dict(),
        }


def _diff(a: dict[Domain, float], b: dict[Domain, float]) -> dict[Domain, float]:
    return {d: b[d] - a.get(d, 0.0) for d in b}


def _times(a: dict[Domain, float], share: float) -> dict[Domain, float]:
    return {d: v * share for d, v in a.items()}


def _add(a: dict[Domain, float], b: dict[Domain, float]) -> dict[Domain, float]:
    return {**a, **{d: a.get(d, 0.0) + v for d, v in b.items()}}


def shares(weights: Sequence[float]) -> list[float]:
    """Each part's share of a window, in proportion to its weight (its tokens); equal parts when all weigh 0.

    The one weighting rule: the runner splits a batch's window among its rows with it, and the proxy's
    ledger an interval among the requests in one phase.
    """
    total = sum(weights)
    return [w / total for w in weights] if total else [1.0 / len(weights)] * len(weights)


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

    def devices(self) -> list[dict[str, Any]]:
        """The accelerators whose energy this meter counts, as the record's ``hardware.gpus`` lists them."""
        return []

    def sharing(self) -> list[dict[str, Any]]:
        """Other processes using the metered devices now: their energy is in the figures too."""
        return []

    def gpu_state(self) -> dict[str, Any] | None:
        """The metered GPUs' state now, for interference: ``throttle_mask`` (NVML clock throttle reason
        bits, OR-ed over the GPUs) and ``other_processes`` (compute processes not ours).  None: no GPU here."""
        return None

    def domains(self) -> frozenset[Domain]:
        """The domains this meter covers here, so ``auto`` gives it only those (default: its provenance's)."""
        return frozenset(Domain(d) for d in self.provenance().domains)

    def settled_until_s(self) -> float:
        """The latest moment (``now_s`` clock) whose readings are final: a scraped counter's lags its samples."""
        return math.inf

    def revise(self, reading: Reading) -> Reading:
        """A reading's final value once ``settled_until_s`` has passed it (a local counter's is final at once)."""
        return reading

    def wait_settled(self, t_s: float, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, until readings up to ``t_s`` are final (a scraped counter's next sample)."""

    def measurement(self, begin: Reading, end: Reading, name: str = "") -> Measurement:
        """The energy spent between two readings of this meter."""
        return Measurement.between(begin, end, self.provenance(), name)

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def now_s() -> float:
    """The clock every meter stamps its readings with."""
    return time.perf_counter()
