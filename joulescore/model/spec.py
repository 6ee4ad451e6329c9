"""A run's spec: what the run is, fixed when it starts and stored with it.

The session writes it (``bench/session.py``), the store keeps it as JSON beside the run, and the record
builder (``store/record.py``) reads it back with the run's rows.  Its sections are the record's own types,
so mypy checks every hand-off from the runner to the record; a spec stored by an older joulescore is read
through :meth:`RunSpec.load`, which leaves out the keys this version does not know.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

from joulescore.model.sections import BUILDING, Hardware, Meter, ModelInfo, SweepLink, TaskInfo


class RunSpec(BaseModel):
    """The run's settings, model, task, machine and meter, as they were at its start."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: the run's settings (``RunConfig.model_dump()``), as the record's ``config`` shows them
    config: dict[str, Any]
    model: ModelInfo
    task: TaskInfo
    hardware: Hardware
    meter: Meter
    #: the reasoning plan applied (``ReasoningPlan.as_dict()`` and where the family came from); None: no plan
    reasoning: Optional[dict[str, Any]] = None
    #: what the machine was doing at the start (``store.interference.start_figures``)
    interference: Optional[dict[str, Any]] = None
    sweep: Optional[SweepLink] = None
    #: a ``--precision`` run's population of prompts (``Population.as_dict()`` and ``why_plain``)
    population: Optional[dict[str, Any]] = None
    #: the machine speed probe timed before and after the run (``bench/probe.py``); set again after the run
    probe: Optional[dict[str, Any]] = None
    #: the joulescore that ran it (None for runs stored before the spec kept it)
    tool_version: Optional[str] = None

    @classmethod
    def build(cls, data: dict[str, Any]) -> RunSpec:
        """The strict path, for the session writing a new run's spec: a key no section declares is an error."""
        return cls.model_validate(data, context={BUILDING: True})

    @classmethod
    def load(cls, data: RunSpec | dict[str, Any]) -> RunSpec:
        """A stored spec, whichever joulescore wrote it: keys this version does not know are left out."""
        if isinstance(data, RunSpec):
            return data
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        if isinstance(known.get("model"), dict):  # ModelInfo is strict even when loading (see its __init__)
            known["model"] = {k: v for k, v in known["model"].items() if k in ModelInfo.model_fields}
        return cls.model_validate(known)

    def stored(self) -> dict[str, Any]:
        """As the store keeps it: JSON types, and only the keys that were given."""
        return self.model_dump(mode="json", exclude_unset=True)
