"""What ran: the sections a run's spec (``model/spec.py``) and its record (``model/record.py``) share.

Each is strict when joulescore builds it (a validation context with ``BUILDING``) and tolerant when a
stored one is read back, so a record or spec an older joulescore wrote still loads.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

#: the validation context key of the strict path: a record joulescore is building now
BUILDING = "building"


class Section(BaseModel):
    """Declared keys only: the published schema allows no others, and ``RunRecord.build`` refuses them.

    Built by joulescore (``RunRecord.build``, the record builder's one way in), a key no section
    declares fails at once, so a typo in the builder cannot become a new field.  Anything else that
    validates a record is reading one written before (or by a newer joulescore): a key this version
    does not know is then left out, so an old record still loads.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any, info: ValidationInfo) -> Any:
        """Unless building (``RunRecord.build``), keep just the keys this section declares."""
        if isinstance(data, dict) and not (info.context and info.context.get(BUILDING)):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data


class Tool(Section):
    name: str = "joulescore"
    version: str


class ModelInfo(Section):
    """What was run: the one description of a loaded model, from the engine to the record."""

    name: str
    path: Optional[str] = None
    backend: str
    quantization: Optional[str] = None
    parameters: Optional[int] = None
    architecture: Optional[str] = None
    context_length: Optional[int] = None
    #: engine-specific facts: GGUF name, size_bytes, batching mode, device...
    extra: dict[str, Any] = {}

    def __init__(self, *args: Any, **facts: Any) -> None:
        """Also positional, as the engines write it: name, path, backend, quantization; the rest by keyword.

        Always strict (an engine's typo fails): pydantic validates through this ``__init__`` without the
        validation context, so a stored record's ``model`` keys are pruned by ``RunRecord`` instead.
        """
        super().__init__(**dict(zip(("name", "path", "backend", "quantization"), args)), **facts)

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any, info: ValidationInfo) -> Any:
        return data

    def as_dict(self) -> dict[str, Any]:
        """What the run's spec stores (the record's ``model`` section)."""
        return self.model_dump()


class TaskInfo(Section):
    name: str
    dataset: str = ""
    num_prompts: int = 0
    metric: str
    reference_field: Optional[str] = None
    template: Optional[str] = None
    #: text, audio or image: what one prompt is (a media prompt is one file)
    inputs: str = "text"
    #: the prompts' fingerprint, so a resumed run can tell its prompt set changed
    prompts_sha256: Optional[str] = None


class GpuInfo(Section):
    """One GPU the meter covers, as the meter described it (meters/nvml_devices.py ``device_facts``)."""

    index: Optional[int] = None
    name: Optional[str] = None
    uuid: Optional[str] = None
    memory_gb: Optional[float] = None
    power_limit_w: Optional[float] = None
    driver_version: Optional[str] = None
    #: how its energy was read: counter, polling or estimate
    energy_method: Optional[str] = None

    @property
    def label(self) -> str:
        """Its name, or ``GPU`` where the meter could not tell."""
        return self.name or "GPU"


class GpuProcess(Section):
    """Another process's compute work on a metered GPU (meters/nvml_devices.py ``other_processes``)."""

    gpu: Optional[str] = None
    pid: int
    name: str = "?"
    memory_mb: Optional[int] = None


class Hardware(Section):
    cpu: str = "unknown CPU"
    cpu_microarchitecture: Optional[str] = None
    logical_cpus: int = 0
    ram_gb: float = 0.0
    #: each GPU the meter covers: name, UUID, memory, power limit, driver
    gpus: list[GpuInfo] = []
    #: compute processes of others seen on those GPUs at the start (their energy is in the GPU's counter)
    other_gpu_processes: list[GpuProcess] = []
    os: str = ""
    machine: str = ""

    def hardware_class(self) -> str:
        """The accelerator when there is one (model and count), else the CPU's microarchitecture: what a
        board groups by and ``compare`` refuses to mix."""
        if self.gpus:
            names = sorted({g.label for g in self.gpus})
            return f"GPU {'+'.join(names)} x{len(self.gpus)}"
        return f"CPU {self.cpu_microarchitecture or self.cpu or 'unknown'}"

    def parts(self) -> list[str]:
        """The machine as whole items: the CPU, how many CPUs, each GPU model with how many (label and board)."""
        gpus = Counter(g.label for g in self.gpus)
        return [self.cpu, f"{self.logical_cpus} CPUs", *(name if n == 1 else f"{name} x{n}" for name, n in gpus.items())]

    def describe(self) -> str:
        """The one line every view writes for the machine a run ran on."""
        return ", ".join(self.parts())


class Meter(Section):
    #: measured, estimated or mixed (per domain in per_domain)
    kind: str
    sources: list[str] = []
    includes: list[str] = []
    #: the meter's stated uncertainty (None where it states none)
    uncertainty_pct: Optional[float] = None
    notes: list[str] = []
    per_domain: Optional[dict[str, dict[str, Any]]] = None
    #: the domains the figures cover (cpu, dram, gpu, system): energy.*_j is null for the others
    domains: list[str] = []
    #: only with --idle-baseline
    idle_baseline_s: Optional[float] = None
    idle_power_w: Optional[dict[str, float]] = None


class ReasoningApplied(Section):
    """``config.reasoning``: the reasoning plan a run applied, as the record keeps it."""

    mode: str
    family: str = ""
    #: how the switch was made: template, prefix, system...
    method: str = ""
    budget: Optional[int] = None
    split: str = ""
    template_kwargs: dict[str, Any] = {}
    assistant_prefix: str = ""
    system_suffix: str = ""
    note: str = ""
    #: "detected" (from the model's metadata and template) or "override" (``--reasoning-family``)
    family_source: Optional[str] = None


class SweepLink(Section):
    id: str
    variant: str


class InterleaveLink(Section):
    """The run was made beside another in alternating blocks on the same machine (``compare --interleave``)."""

    #: the other side's run id (stored as ``with``)
    partner: str
    #: how many blocks each side's prompts were cut into
    blocks: int

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: Any, info: ValidationInfo) -> Any:
        """The stored name first (``with`` is a Python keyword), then the sections' rule for unknown keys."""
        if isinstance(data, dict) and "with" in data:
            data = {"partner": data["with"], **{k: v for k, v in data.items() if k != "with"}}
        return Section._tolerate.__func__(cls, data, info)  # the parent's rule
