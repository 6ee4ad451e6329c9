"""The CPU boundary: ``$JOULESCORE_CPUINFO`` (the suite's ``--cpu-identity``) stands in for /proc/cpuinfo.

Every CPU fact joulescore records (name, microarchitecture, instruction set) and the estimator's
coefficients come through :func:`joulescore.hardware.cpu_info`, in this process and in the CLI's.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CPUINFO_FIXTURES, assert_one_line_error, cli

from joulescore import hardware
from joulescore.meters.estimator import EstimatorMeter

#: fixture -> (hardware.cpu, microarchitecture, machine, the estimator's coefficients)
IDENTITIES = {
    "amd": ("AMD EPYC 9654 96-Core Processor (Zen 4 (Genoa))", "Zen 4 (Genoa)", "x86_64",
            "Teads curve on AMD EPYC 9654 TDP 360 W"),
    "arm": ("Arm Neoverse V1", "Arm Neoverse V1", "aarch64", "CCF average for an unknown microarchitecture"),
    "intel": ("Intel(R) Xeon(R) Platinum 8480+ (Sapphire Rapids)", "Sapphire Rapids", "x86_64",
              "Teads curve on Intel Xeon Platinum 8480+ TDP 350 W"),
}


@pytest.fixture
def as_cpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Leave the cached CPU as the session's once a test has changed ``$JOULESCORE_CPUINFO``."""
    hardware.cpu_info.cache_clear()
    yield
    hardware.cpu_info.cache_clear()


def _estimator_row(proc_stdout: str) -> dict[str, object]:
    return next(row for row in json.loads(proc_stdout) if row["name"] == "estimator")


@pytest.mark.parametrize("identity", sorted(IDENTITIES))
def test_hardware_info_reports_the_named_cpu(identity: str, monkeypatch: pytest.MonkeyPatch, as_cpu: None) -> None:
    cpu, arch, machine, coefficients = IDENTITIES[identity]
    monkeypatch.setenv(hardware.CPUINFO_ENV, str(CPUINFO_FIXTURES / identity))
    hardware.cpu_info.cache_clear()
    info = hardware.hardware_info()
    assert (info.cpu, info.cpu_microarchitecture, info.machine) == (cpu, arch, machine)
    assert EstimatorMeter().provenance().sources[0].startswith(f"estimator: {coefficients}")


@pytest.mark.parametrize("identity", sorted(IDENTITIES))
def test_the_cli_reports_the_named_cpu(identity: str, tmp_path: Path) -> None:
    cpu, _, _, coefficients = IDENTITIES[identity]
    proc = cli("meters", "--json", env={hardware.CPUINFO_ENV: str(CPUINFO_FIXTURES / identity),
                                        "JOULESCORE_POWERCAP_ROOT": str(tmp_path / "absent")})
    assert proc.returncode == 0, proc.stderr
    assert str(_estimator_row(proc.stdout)["reason"]).startswith(f"always available; coefficients for {cpu}: "
                                                                 f"{coefficients}")


def test_the_sessions_identity_reaches_the_cli(tmp_path: Path) -> None:
    """Whatever ``--cpu-identity`` the suite runs under, a CLI subprocess sees the same CPU as this process."""
    proc = cli("meters", "--json", env={"JOULESCORE_POWERCAP_ROOT": str(tmp_path / "absent")})
    assert proc.returncode == 0, proc.stderr
    assert f"coefficients for {hardware.cpu_info().display}: " in str(_estimator_row(proc.stdout)["reason"])


@pytest.mark.slow
def test_a_run_records_the_named_cpu(db: Path) -> None:
    cpu, arch, machine, coefficients = IDENTITIES["arm"]
    proc = cli("run", "--limit", "1", "--warmup", "0", "--max-new-tokens", "1", "--json", "--no-progress",
               db=db, env={hardware.CPUINFO_ENV: str(CPUINFO_FIXTURES / "arm")})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["hardware"]["cpu"] == cpu and record["hardware"]["cpu_microarchitecture"] == arch
    assert record["hardware"]["machine"] == machine
    assert record["meter"]["sources"][0] == f"estimator: {coefficients}"
    shown = cli("show", record["run_id"], db=db)
    assert shown.returncode == 0 and cpu in shown.stdout


def test_an_unreadable_cpuinfo_is_a_one_line_error(tmp_path: Path) -> None:
    proc = cli("meters", env={hardware.CPUINFO_ENV: str(tmp_path / "absent")})
    assert_one_line_error(proc, "$JOULESCORE_CPUINFO", "absent")


def test_without_the_variable_the_machines_own_cpuinfo_is_read(monkeypatch: pytest.MonkeyPatch,
                                                                  as_cpu: None) -> None:
    monkeypatch.delenv(hardware.CPUINFO_ENV, raising=False)
    proc_cpuinfo = Path("/proc/cpuinfo")
    if not proc_cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this OS")
    expected = hardware.parse_cpuinfo(proc_cpuinfo.read_text(encoding="utf-8", errors="replace"))
    info = hardware.cpu_info()
    assert (info.model_name, info.microarchitecture) == (expected.model_name, expected.microarchitecture)
    assert info.machine == (platform.machine() or expected.machine)


def test_arm_cores_are_named_from_implementer_and_part() -> None:
    def arm(implementer: str, part: str, extra: str = "") -> hardware.CpuInfo:
        return hardware.parse_cpuinfo(f"processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: {implementer}\n"
                                      f"CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: {part}\n"
                                      f"CPU revision\t: 1\n{extra}\n")

    graviton2 = arm("0x41", "0xd0c")
    assert (graviton2.model_name, graviton2.vendor, graviton2.machine) == ("Arm Neoverse N1", "ARM", "aarch64")
    assert arm("0x41", "0xd4f").microarchitecture == "Arm Neoverse V2"
    unknown = arm("0xc0", "0xac3")
    assert unknown.model_name == "Ampere CPU (implementer 0xc0, part 0xac3)" and unknown.microarchitecture is None
    assert arm("0x41", "0xd08", "\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n").model_name \
        == "Raspberry Pi 4 Model B Rev 1.4"
