"""What every stored row keeps beside its figures, shared by the text runner and the media runner."""

from __future__ import annotations

from typing import Any

from joulescore.backends.base import Generation
from joulescore.meters.base import Domain, Measurement, Reading
from joulescore.store.rows import RowExtra, WindowFigures
from joulescore.tasks.spec import Prompt


def energy_sums(reading: Reading) -> tuple[float, float, float]:
    """A reading's energy, low and high bounds, summed over its domains."""
    return sum(reading.energy_j.values()), sum(reading.low_j.values()), sum(reading.high_j.values())


def whole_machine_j(window: Measurement) -> float | None:
    """The window's energy with each attributed domain replaced by its whole-machine counter, where the
    meter keeps one (the estimator's ``cpu:machine``, ``dram:machine``); None where none does."""
    machine = {k.split(":")[0]: v for k, v in window.detail_j.items() if k.endswith(":machine")}
    if not machine:
        return None
    return window.total_j + sum(v - window.energy_j.get(Domain(d), 0.0) for d, v in machine.items())


def keep_watched(extra: RowExtra, window: Measurement, figures: dict[str, Any], share: float = 1.0) -> None:
    """Keep a window's whole-machine energy and interference figures with its row (a batch row: its share)."""
    machine = whole_machine_j(window)
    if machine is not None:
        extra.machine_j = machine * share
    if figures:
        watched = WindowFigures(**figures)
        extra.interference = watched.scaled(share) if share != 1.0 else watched


def common_extra(prompt: Prompt, gen: Generation, **more: Any) -> RowExtra:
    """What every stored row keeps beside its figures: the reference answer and the cache reuse (and ``more``)."""
    kept: dict[str, Any] = {}
    if prompt.reference is not None:
        kept["reference"] = prompt.reference
    if gen.cached_input_tokens:
        kept["cached_input_tokens"] = gen.cached_input_tokens
    return RowExtra(**more, **kept)
