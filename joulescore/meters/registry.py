"""Every energy source joulescore knows, in one table, imported only when used.

Like ``joulescore.backends.ENGINES``: adding a source is one entry here.  The
entries drive ``select_meter``, the ``auto`` composite and ``joulescore meters``,
so a source is never listed twice and a missing driver costs nothing until it
is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from joulescore.errors import MeterUnavailable
from joulescore.meters.base import Domain, Meter, MeterStatus


def _resolve(target: str) -> Any:
    """The object named by ``"module:attr.attr"``, importing the module now."""
    module_name, _, attr_path = target.partition(":")
    obj: Any = import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


@dataclass(frozen=True)
class MeterEntry:
    """One energy source: where its class lives, what it can cover, and how much ``auto`` prefers it."""

    name: str
    #: "module:Class", imported on first use
    meter: str
    #: "module:function" returning one MeterStatus or a list of them (``joulescore meters`` rows)
    status: str
    #: the domains this source can ever cover; a given machine may offer fewer (RAPL without DRAM)
    covers: frozenset[Domain]
    #: lower runs first in ``auto``: the first available source for a domain owns it
    priority: int
    #: the estimator counts the measured process tree's CPU time; counters take no such input
    takes_cpu_seconds: bool = False
    #: noted by ``auto`` when this source is unavailable and later ones cover for it ("{reason}" is filled in)
    fallback_note: str = ""
    #: a scraped source takes its URL, preset and selector (``ScrapeOptions``); never chosen by ``auto``
    takes_options: bool = False

    def create(self, cpu_seconds: Callable[[], float] | None = None, attribute: bool = True,
               options: Any = None) -> Meter:
        """A meter of this source; raises MeterUnavailable (only) when it cannot measure here.

        ``attribute``: a CPU-time source shares idle power out by the run's share of busy CPU time.
        """
        cls = _resolve(self.meter)
        if self.takes_options:
            return cls(options)
        if self.takes_cpu_seconds:
            kwargs: dict[str, Any] = {"attribute": attribute}
            if cpu_seconds is not None:
                kwargs["cpu_seconds"] = cpu_seconds
            return cls(**kwargs)
        return cls()

    def try_create(self, cpu_seconds: Callable[[], float] | None = None,
                   attribute: bool = True) -> tuple[Meter | None, str]:
        """The meter, or None and the reason it is unavailable; other errors are bugs and propagate."""
        try:
            return self.create(cpu_seconds, attribute), ""
        except MeterUnavailable as exc:
            return None, str(exc)

    def statuses(self) -> list[MeterStatus]:
        """This source's rows for ``joulescore meters``."""
        result = _resolve(self.status)()
        return list(result) if isinstance(result, (list, tuple)) else [result]


_GPU = frozenset({Domain.GPU})
_CPU_DRAM = frozenset({Domain.CPU, Domain.DRAM})

_ENTRIES = (
    MeterEntry("nvml", "joulescore.meters.nvml:NvmlMeter", "joulescore.meters.nvml:statuses", _GPU, 10),
    MeterEntry("amdsmi", "joulescore.meters.amdsmi_meter:AmdSmiMeter", "joulescore.meters.amdsmi_meter:status",
               _GPU, 20),
    MeterEntry("rapl", "joulescore.meters.rapl:RaplMeter", "joulescore.meters.rapl:status", _CPU_DRAM, 30,
               fallback_note="RAPL unavailable, CPU/DRAM estimated instead: {reason}"),
    MeterEntry("estimator", "joulescore.meters.estimator:EstimatorMeter",
               "joulescore.meters.estimator:EstimatorMeter.status", _CPU_DRAM, 100, takes_cpu_seconds=True),
    # scraped counters (a cluster's exporters): asked for by name, with a URL; they cover nothing for ``auto``
    MeterEntry("prometheus", "joulescore.meters.prometheus:PrometheusMeter", "joulescore.meters.prometheus:status",
               frozenset(), 200, takes_options=True),
    MeterEntry("exporter", "joulescore.meters.exporter:ExporterMeter", "joulescore.meters.exporter:status",
               frozenset(), 210, takes_options=True),
)
#: name -> entry, most preferred first (the order ``joulescore meters`` lists them)
METERS: dict[str, MeterEntry] = {e.name: e for e in sorted(_ENTRIES, key=lambda e: e.priority)}
#: what ``--meter`` accepts
METER_NAMES: tuple[str, ...] = ("auto", *METERS)


def auto_parts(cpu_seconds: Callable[[], float] | None = None, attribute: bool = True
               ) -> tuple[list[tuple[Meter, frozenset[Domain]]], list[str]]:
    """The best available source per domain, and notes on what fell back or stayed uncovered.

    Sources are tried in priority order; each takes the domains it covers here
    that no earlier source took.  A domain no remaining source can cover is
    noted as ``"<domain> not covered (<why each source failed>)"``.
    """
    entries = list(METERS.values())
    left: set[Domain] = set().union(*(e.covers for e in entries))
    parts: list[tuple[Meter, frozenset[Domain]]] = []
    notes: list[str] = []
    reasons: dict[Domain, list[str]] = {}
    for i, e in enumerate(entries):
        wanted = e.covers & left
        if wanted:
            meter, reason = e.try_create(cpu_seconds, attribute)
            if meter is None:
                for d in wanted:
                    reasons.setdefault(d, []).append(f"{e.name}: {reason}")
                if e.fallback_note:
                    notes.append(e.fallback_note.format(reason=reason))
            else:
                covered = frozenset(meter.domains() & wanted)
                parts.append((meter, covered))
                left -= covered
        later = set().union(*(x.covers for x in entries[i + 1:]))
        for d in sorted(left - later, key=lambda d: d.value):
            notes.append(f"{d.value} not covered ({'; '.join(reasons.get(d, []))})")
            left.discard(d)
    return parts, notes
