"""One meter made of the best source per domain (GPU from NVML, CPU from RAPL, ...).

Each part contributes only the domains it was chosen for, so nothing is
counted twice.  The run-level kind is "measured" only when every domain is;
otherwise "estimated" (all estimated) or "mixed", with per-domain detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from joulescore.meters.base import Domain, Meter, MeterKind, Provenance, Reading, now_s


def domain_kinds(meter: Meter, domains: frozenset[Domain]) -> dict[str, dict[str, str]]:
    """Per-domain kind and source of one part, restricted to the domains it covers here."""
    prov = meter.provenance()
    out = {}
    for d in sorted(domains, key=lambda d: d.value):
        default = {"kind": prov.kind, "source": prov.sources[0] if prov.sources else meter.name}
        out[d.value] = dict(prov.domains.get(d.value, default))
    return out


def combined_kind(kinds: Sequence[str]) -> MeterKind:
    if kinds and all(k == "measured" for k in kinds):
        return "measured"
    if all(k == "estimated" for k in kinds):
        return "estimated"
    return "mixed"


def sum_mask(masks: Iterable[int]) -> int:
    out = 0
    for m in masks:
        out |= int(m)
    return out


class CompositeMeter(Meter):
    """Several meters read together; each owns a disjoint set of domains."""

    name = "auto"

    def __init__(self, parts: Sequence[tuple[Meter, frozenset[Domain]]], notes: Sequence[str] = ()) -> None:
        owned: set[Domain] = set()
        for _, domains in parts:
            if owned & domains:
                raise ValueError(f"domains {sorted(d.value for d in owned & domains)} would be counted twice")
            owned |= domains
        self.parts = list(parts)
        self.notes = tuple(notes)

    def start(self) -> None:
        for meter, _ in self.parts:
            meter.start()

    def devices(self) -> list[dict[str, Any]]:
        return [d for meter, _ in self.parts for d in meter.devices()]

    def sharing(self) -> list[dict[str, Any]]:
        return [s for meter, _ in self.parts for s in meter.sharing()]

    def gpu_state(self) -> dict[str, Any] | None:
        states = [s for s in (meter.gpu_state() for meter, _ in self.parts) if s is not None]
        if not states:
            return None
        return {"throttle_mask": sum_mask(s.get("throttle_mask", 0) for s in states),
                "other_processes": [p for s in states for p in s.get("other_processes", [])]}

    def stop(self) -> None:
        for meter, _ in self.parts:
            meter.stop()

    def read(self) -> Reading:
        energy: dict[Domain, float] = {}
        low: dict[Domain, float] = {}
        high: dict[Domain, float] = {}
        detail: dict[str, float] = {}
        for meter, domains in self.parts:
            r = meter.read()
            for d in domains:
                if d in r.energy_j:
                    energy[d], low[d], high[d] = r.energy_j[d], r.low_j[d], r.high_j[d]
            detail.update({k: v for k, v in r.detail_j.items() if k.split(":")[0] in {d.value for d in domains}})
        order = [d for d in Domain if d in energy]  # a stable cpu, dram, gpu, system order
        return Reading(now_s(), {d: energy[d] for d in order}, {d: low[d] for d in order},
                       {d: high[d] for d in order}, detail)

    def provenance(self) -> Provenance:
        per: dict[str, dict[str, str]] = {}
        sources: list[str] = []
        includes: list[str] = []
        notes: list[str] = []
        uncertainty = 0.0
        for meter, domains in self.parts:
            prov = meter.provenance()
            per.update(domain_kinds(meter, domains))
            names = {d.value for d in domains}
            sources.extend(s for s in prov.sources if s not in sources)
            includes.extend(i for i in prov.includes if i.split(":")[0] in names)
            notes.extend(prov.notes)
            if prov.kind != "measured":
                uncertainty = max(uncertainty, prov.uncertainty_pct)
        kind = combined_kind([v["kind"] for v in per.values()])
        if kind == "mixed":
            est = ", ".join(d for d, v in per.items() if v["kind"] != "measured")
            notes.insert(0, f"mixed: {est} estimated, the rest measured (see per_domain)")
        return Provenance(kind, tuple(sources), tuple(includes), uncertainty, tuple(notes + list(self.notes)), per)
