"""AMD GPU energy through amdsmi's energy accumulator (ROCm's amdsmi Python package).

``amdsmi_get_energy_count`` returns the accumulator and its resolution; their
product is microjoules since the driver loaded.  The package needs ROCm's
shared library at import time, so ImportError or OSError means "not here".
``ROCR_VISIBLE_DEVICES`` / ``HIP_VISIBLE_DEVICES`` (indices) select GPUs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from joulescore.errors import MeterUnavailable
from joulescore.meters.base import Domain, Meter, MeterStatus, Provenance, Reading, now_s


class AmdSmiUnavailable(MeterUnavailable):
    """amdsmi cannot measure any GPU here; the message says why."""


def import_amdsmi() -> Any:
    """The amdsmi binding: the hardware boundary tests replace."""
    import amdsmi

    return amdsmi


def energy_uj(amdsmi: Any, handle: Any) -> float:
    """Cumulative energy of one GPU in microjoules (both key spellings amdsmi has used)."""
    info = amdsmi.amdsmi_get_energy_count(handle)
    acc = info.get("energy_accumulator", info.get("power"))
    if acc is None:
        raise AmdSmiUnavailable(f"amdsmi_get_energy_count returned no accumulator: {sorted(info)}")
    return float(acc) * float(info["counter_resolution"])


def _visible(count: int, env: Mapping[str, str]) -> list[int]:
    raw = env.get("ROCR_VISIBLE_DEVICES", env.get("HIP_VISIBLE_DEVICES"))
    if raw is None:
        return list(range(count))
    out = []
    for item in (s.strip() for s in raw.split(",")):
        if not item.isdigit() or int(item) >= count:
            break
        out.append(int(item))
    return out


class AmdSmiMeter(Meter):
    """Per-GPU cumulative energy counters of AMD Instinct/Radeon GPUs."""

    name = "amdsmi"

    def __init__(self, amdsmi: Any = None, env: Mapping[str, str] | None = None) -> None:
        try:
            self.amdsmi = amdsmi if amdsmi is not None else import_amdsmi()
            self.amdsmi.amdsmi_init()
            handles = list(self.amdsmi.amdsmi_get_processor_handles())
        except (ImportError, OSError) as exc:
            raise AmdSmiUnavailable(f"amdsmi not importable ({exc}); it ships with ROCm") from None
        except Exception as exc:
            raise AmdSmiUnavailable(f"amdsmi unavailable: {exc}") from None
        self.refused: list[str] = []
        self.gpus: dict[str, Any] = {}
        for i in _visible(len(handles), os.environ if env is None else env):
            try:
                energy_uj(self.amdsmi, handles[i])
                self.gpus[f"gpu{i}"] = handles[i]
            except Exception as exc:
                self.refused.append(f"gpu{i}: energy counter refused: {exc}")
        if not self.gpus:
            raise AmdSmiUnavailable("no AMD GPU energy counter readable" +
                                    (f": {'; '.join(self.refused)}" if self.refused else ": no GPU visible"))
        self._lock = threading.Lock()
        self._base_uj = {k: energy_uj(self.amdsmi, h) for k, h in self.gpus.items()}

    def read(self) -> Reading:
        with self._lock:
            t = now_s()
            per = {k: (energy_uj(self.amdsmi, h) - self._base_uj[k]) / 1e6 for k, h in self.gpus.items()}
        total = sum(per.values())
        return Reading(t, {Domain.GPU: total}, {Domain.GPU: total}, {Domain.GPU: total},
                       {f"gpu:{k}": v for k, v in per.items()})

    def provenance(self) -> Provenance:
        return Provenance(
            kind="measured",
            sources=("amdsmi energy accumulator",),
            includes=tuple(f"gpu: {k}" for k in self.gpus),
            uncertainty_pct=0.0,
            notes=tuple(self.refused),
            domains={"gpu": {"kind": "measured", "source": "amdsmi energy accumulator"}},
        )


def status(amdsmi: Any = None) -> MeterStatus:
    try:
        meter = AmdSmiMeter(amdsmi)
    except AmdSmiUnavailable as exc:
        return MeterStatus("amdsmi", False, str(exc), ("gpu",), "energy accumulator x resolution (uJ)")
    return MeterStatus("amdsmi", True, f"GPUs: {', '.join(meter.gpus)}", ("gpu",),
                       "energy accumulator x resolution (uJ)", "measured")
