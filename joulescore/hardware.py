"""What machine a run happened on: the facts a figure is meaningless without."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

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


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    vendor: str
    family: int | None
    model: int | None
    stepping: int | None
    microarchitecture: str | None

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
    """Read the first processor block of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or "unknown CPU"
    vendor = fields.get("vendor_id", "")

    def _int(key: str) -> int | None:
        value = fields.get(key)
        try:
            return int(value, 0) if value is not None else None
        except ValueError:
            return None

    family, model, stepping = _int("cpu family"), _int("model"), _int("stepping")
    return CpuInfo(name, vendor, family, model, stepping, _microarchitecture(vendor, family, model, stepping))


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
    path = Path("/proc/cpuinfo")
    if path.exists():
        return parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"))
    return CpuInfo(platform.processor() or "unknown CPU", "", None, None, None, None)


def logical_cpus() -> int:
    """CPUs this process may run on (a container's quota, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


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
        machine=platform.machine(),
    )
