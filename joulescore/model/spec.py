"""A run's spec: what the run is, fixed when it starts and stored with it.

The session writes it (``bench/session.py``), the store keeps it as JSON beside the run, and the record
builder (``store/record.py``) reads it back with the run's rows.  Its sections are typed (the settings are
the run's :class:`RunConfig`), so mypy checks every hand-off from the runner to the record; a spec stored by
an older joulescore is read through :meth:`RunSpec.load`, which leaves out the keys this version does not
know and never refuses the settings an older version stored (:meth:`RunConfig.load`).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, PrivateAttr

from joulescore.model.config import RunConfig
from joulescore.model.sections import (
    BUILDING,
    Hardware,
    InterleaveLink,
    Meter,
    ModelInfo,
    ReasoningApplied,
    Section,
    SweepLink,
    TaskInfo,
)


class SpeedProbe(Section):
    """The machine speed probe (``bench/probe.py``): each figure a list, [before] at the start, [before, after]
    once the run has answered."""

    #: the workload, in words: a different workload is a different probe
    workload: str = ""
    meter_kind: str = ""
    cpu_s: list[float] = []
    wall_s: list[float] = []
    energy_j: list[float] = []


class SamplePopulation(Section):
    """A ``--precision`` run's population of prompts (``store.estimate.Population``) and, where the engine could
    not count tokens before running, why its estimate is the plain mean."""

    prompts: Optional[int] = None
    covariate_mean: Optional[float] = None
    source: Optional[str] = None
    covariate: Optional[str] = None
    why_plain: Optional[str] = None


class RunSpec(BaseModel):
    """The run's settings, model, task, machine and meter, as they were at its start."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: the run's settings; stored (and shown in the record's ``config``) as ``RunConfig.model_dump()``
    config: RunConfig
    model: ModelInfo
    task: TaskInfo
    hardware: Hardware
    meter: Meter
    #: the reasoning plan applied (``ReasoningPlan.as_dict()`` and where the family came from); None: no plan
    reasoning: Optional[ReasoningApplied] = None
    #: what the machine was doing at the start (``store.interference.StartFacts``, which lives above this layer)
    interference: Optional[dict[str, Any]] = None
    sweep: Optional[SweepLink] = None
    #: the run made beside it in alternating blocks (``compare --interleave``); set after the run is created
    interleave: Optional[InterleaveLink] = None
    #: a ``--precision`` run's population of prompts
    population: Optional[SamplePopulation] = None
    #: the machine speed probe timed before and after the run; set again after the run
    probe: Optional[SpeedProbe] = None
    #: the joulescore that ran it (None for runs stored before the spec kept it)
    tool_version: Optional[str] = None
    #: the settings as the store holds them, for a spec read back (whichever joulescore wrote them)
    _stored_config: Optional[dict[str, Any]] = PrivateAttr(None)

    @classmethod
    def build(cls, data: dict[str, Any]) -> RunSpec:
        """The strict path, for the session writing a new run's spec: a key no section declares is an error."""
        return cls.model_validate(data, context={BUILDING: True})

    @classmethod
    def load(cls, data: RunSpec | dict[str, Any]) -> RunSpec:
        """A stored spec, whichever joulescore wrote it: keys this version does not know are left out, and
        settings that no longer validate fall back to their defaults (:meth:`RunConfig.load`)."""
        if isinstance(data, RunSpec):
            return data
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        if isinstance(known.get("model"), dict):  # ModelInfo is strict even when loading (see its __init__)
            known["model"] = {k: v for k, v in known["model"].items() if k in ModelInfo.model_fields}
        stored = known.get("config")
        stored = dict(stored) if isinstance(stored, dict) else {}
        known["config"] = RunConfig.load(stored)
        spec = cls.model_validate(known)
        spec._stored_config = stored
        return spec

    def config_as_stored(self) -> dict[str, Any]:
        """The settings as the store keeps them and the record's ``config`` shows them: as they were written for
        a spec read back (an older joulescore's keys and all), else the settings' JSON."""
        return dict(self._stored_config) if self._stored_config is not None else self.config.model_dump(mode="json")

    def stored(self) -> dict[str, Any]:
        """As the store keeps it: JSON types, and only the keys that were given (all of the settings)."""
        return {"config": self.config_as_stored(),
                **self.model_dump(mode="json", exclude_unset=True, exclude={"config"})}
