"""What machine a run happened on: the facts a figure is meaningless without.

The CPU's identity comes from ``/proc/cpuinfo`` only, read by :func:`cpu_info`;
``$JOULESCORE_CPUINFO`` names another file in that format to read instead (for
tests: the suite's ``--cpu-identity`` option runs it, subprocesses included, as
another machine would, from the files in tests/fixtures/cpuinfo/).
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from joulescore.errors import BadInput

# (vendor, family, model) -> microarchitecture, as the reference tables name it.
# Sources: Intel SDM vol. 4 table 2-1 (DisplayFamily_DisplayModel) and AMD's
# processor programming references.  Only server parts that matter for cloud VMs.
_INTEL_MODELS: dict[int, str] = {
    0x3F: "Haswell",
    0x4F: "Broadwell",
    0x55: "Skylake",  # stepping >= 5 is Cascade Lake, resolved below
    0x6A: "Ice Lake-SP",
    0x6C: "Ice Lake-SP",
    0x8F: "Sapphire Rapids",
    0xCF: "Emerald Rapids",
    0xAD: "Granite Rapids-AP",
    0x9E: "Coffee Lake",
    0x2D: "Sandy Bridge",
    0x3E: "Ivy Bridge",
}
_AMD_FAMILIES: dict[tuple[int, int], str] = {
    # (family, model >> 4) -> microarchitecture
    (0x17, 0x0): "AMD EPYC 1st Gen (Naples)",
    (0x17, 0x3): "AMD EPYC 2nd Gen (Rome)",
    (0x19, 0x0): "AMD EPYC 3rd Gen (Milan)",
    (0x19, 0x1): "Zen 4 (Genoa)",
    (0x19, 0xA): "Zen 4 (Genoa)",
    (0x1A, 0x0): "Zen 5 (Turin)",
    (0x1A, 0x1): "Zen 5 (Turin)",
}
# Arm cores by (CPU implementer, CPU part), as the kernel's arm64 cputype.h and
# Arm's technical reference manuals number them; Arm's /proc/cpuinfo has no
# "model name".  Named as the reference tables name the microarchitecture.
_ARM_PARTS: dict[tuple[int, int], str] = {
    (0x41, 0xD0C): "Arm Neoverse N1",  # AWS Graviton2, Ampere Altra
    (0x41, 0xD40): "Arm Neoverse V1",  # AWS Graviton3
    (0x41, 0xD49): "Arm Neoverse N2",
    (0x41, 0xD4F): "Arm Neoverse V2",  # AWS Graviton4, NVIDIA Grace
    (0x41, 0xD8E): "Arm Neoverse N3",
    (0x41, 0xD84): "Arm Neoverse V3",
}
_ARM_IMPLEMENTERS = {0x41: "ARM", 0xC0: "Ampere", 0x61: "Apple", 0x48: "HiSilicon", 0x51: "Qualcomm"}
#: the environment variable naming a /proc/cpuinfo-format file to read instead of the machine's
CPUINFO_ENV = "JOULESCORE_CPUINFO"


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    vendor: str
    family: int | None
    model: int | None
    stepping: int | None
    microarchitecture: str | None
    #: the instruction set, as platform.machine() names it ("x86_64", "aarch64"); "" when the text does not say
    machine: str = ""

    @property
    def display(self) -> str:
        if self.microarchitecture and self.microarchitecture not in self.model_name:
            return f"{self.model_name} ({self.microarchitecture})"
        return self.model_name


@dataclass(frozen=True)
class HardwareInfo:
    cpu: str
    cpu_microarchitecture: str | None
    logical_cpus: int
    ram_gb: float
    gpus: list[dict[str, object]] = field(default_factory=list)
    os: str = ""
    machine: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Read the first processor block of /proc/cpuinfo, and the board's lines some Arm kernels add at its end."""
    fields: dict[str, str] = {}
    for n, block in enumerate(b for b in re.split(r"\n\s*\n", text) if b.strip()):
        pairs = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines())]
        if n == 0 or not any(k == "processor" for k, _ in pairs):
            for key, value in pairs:
                fields.setdefault(key, value)

    def _int(key: str) -> int | None:
        value = fields.get(key)
        try:
            return int(value, 0) if value is not None else None
        except ValueError:
            return None

    if "model name" not in fields and "CPU implementer" in fields:
        return _arm_cpu(fields, _int("CPU implementer"), _int("CPU part"))
    name = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or "unknown CPU"
    vendor = fields.get("vendor_id", "")
    family, model, stepping = _int("cpu family"), _int("model"), _int("stepping")
    machine = ("x86_64" if " lm " in f" {fields['flags']} " else "i686") if "flags" in fields else ""
    return CpuInfo(name, vendor, family, model, stepping, _microarchitecture(vendor, family, model, stepping), machine)


def _arm_cpu(fields: dict[str, str], implementer: int | None, part: int | None) -> CpuInfo:
    """An Arm CPU, named from its implementer and part numbers (what lscpu does)."""
    arch = _ARM_PARTS.get((implementer or 0, part or 0))
    vendor = _ARM_IMPLEMENTERS.get(implementer or 0, "")
    board = fields.get("Model") or fields.get("Hardware")  # a board's name (Raspberry Pi), when the kernel gives one
    name = arch or board or (f"{vendor or 'Arm'} CPU (implementer {fields.get('CPU implementer')}, "
                             f"part {fields.get('CPU part', '?')})")
    machine = "aarch64" if fields.get("CPU architecture", "").startswith("8") else ""
    return CpuInfo(name, vendor, None, None, None, arch, machine)


def _microarchitecture(vendor: str, family: int | None, model: int | None, stepping: int | None) -> str | None:
    if family is None or model is None:
        return None
    if vendor == "GenuineIntel" and family == 6:
        arch = _INTEL_MODELS.get(model)
        if arch == "Skylake" and stepping is not None and stepping >= 5:
            return "Cascade Lake"
        return arch
    if vendor == "AuthenticAMD":
        return _AMD_FAMILIES.get((family, model >> 4))
    return None


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU, from /proc/cpuinfo (or the file ``$JOULESCORE_CPUINFO`` names)."""
    named = os.environ.get(CPUINFO_ENV)
    if named:
        try:
            return parse_cpuinfo(Path(named).read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise BadInput(f"${CPUINFO_ENV}: cannot read {named} ({exc.strerror or exc})") from None
    path = Path("/proc/cpuinfo")
    if path.exists():
        info = parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"))
        return replace(info, machine=platform.machine() or info.machine)
    return CpuInfo(platform.processor() or "unknown CPU", "", None, None, None, None, platform.machine())


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (a container's or taskset's, not the host's): the machine a run has."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return list(range(os.cpu_count() or 1))


def logical_cpus() -> int:
    """How many CPUs this process may run on (a container's quota, not the host's count)."""
    return len(allowed_cpus())


def ram_gb() -> float:
    """Installed memory as the OS reports it, in GB (10^9 bytes)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9 if pages else 0.0


def hardware_info(gpus: list[dict[str, object]] | None = None) -> HardwareInfo:
    cpu = cpu_info()
    return HardwareInfo(
        cpu=cpu.display,
        cpu_microarchitecture=cpu.microarchitecture,
        logical_cpus=logical_cpus(),
        ram_gb=round(ram_gb(), 2),
        gpus=list(gpus or []),
        os=f"{platform.system()} {platform.release()}",
        machine=cpu.machine,
    )
