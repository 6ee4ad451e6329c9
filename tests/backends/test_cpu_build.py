"""The llama.cpp build choice: the widest instruction set the CPU, the compiler and the kernel allow."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from joulescore.backends import cpu_build
from joulescore.backends.cpu_build import cmake_args, fast_options, isa_of, parse_system_info

ROOT = Path(__file__).resolve().parents[2]
AVX2 = frozenset("fpu sse sse2 avx avx2 fma f16c bmi2".split())
ZEN4 = AVX2 | frozenset("avx512f avx512cd avx512vl avx512dq avx512bw avx512vbmi avx512_vnni avx512_bf16".split())
SPR = ZEN4 | frozenset("avx_vnni amx_tile amx_int8 amx_bf16".split())


def everything(_flags: tuple[str, ...]) -> bool:
    return True


def on(options: dict[str, bool]) -> set[str]:
    return {k for k, v in options.items() if v}


def test_avx512_cpu_gets_avx512_and_no_amx() -> None:
    assert on(fast_options(ZEN4, amx=False, targets=everything)) == {
        "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2", "GGML_AVX512", "GGML_AVX512_VBMI",
        "GGML_AVX512_VNNI", "GGML_AVX512_BF16"}


def test_amx_needs_the_kernels_permission_as_well_as_the_flag() -> None:
    assert not on(fast_options(SPR, amx=False, targets=everything)) & {"GGML_AMX_TILE", "GGML_AMX_INT8"}
    assert {"GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_AVX_VNNI"} <= on(
        fast_options(SPR, amx=True, targets=everything))


def test_an_extension_without_avx512f_is_left_off() -> None:
    flags = AVX2 | {"avx512_vnni", "amx_tile"}
    assert on(fast_options(flags, amx=True, targets=everything)) == on(fast_options(AVX2, amx=True,
                                                                                     targets=everything))


def test_what_the_compiler_cannot_target_is_left_off() -> None:
    options = fast_options(SPR, amx=True, targets=lambda flags: not any("amx" in f for f in flags))
    assert options["GGML_AVX512"] and not options["GGML_AMX_TILE"]


def test_portable_build_is_the_avx2_set_and_arm_builds_natively() -> None:
    portable = cmake_args("portable", machine="x86_64")
    assert isa_of(portable) == "AVX AVX2 FMA F16C BMI2"
    assert "-DGGML_NATIVE=OFF" in portable
    assert isa_of(cmake_args("fast", flags=ZEN4, amx=False, machine="x86_64")).endswith("AVX512_BF16")
    assert cmake_args("fast", machine="aarch64")[0] == "-DGGML_NATIVE=ON"
    with pytest.raises(ValueError):
        cmake_args("native")


def test_flags_come_from_the_cpuinfo_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\n")
    monkeypatch.setenv("JOULESCORE_CPUINFO", str(info))
    assert cpu_build.cpu_flags() == frozenset({"fpu", "avx2", "avx512f"})
    info.write_text("processor\t: 0\nFeatures\t: fp asimd sve\n")  # Arm's spelling
    assert cpu_build.cpu_flags() == frozenset({"fp", "asimd", "sve"})
    monkeypatch.setenv("JOULESCORE_CPUINFO", str(tmp_path / "missing"))
    assert cpu_build.cpu_flags() == frozenset()


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler on PATH")
def test_the_real_compiler_is_asked() -> None:
    assert cpu_build.compiler_targets(("-O2",))
    assert not cpu_build.compiler_targets(("-mno-such-instruction-set-flag",))


def test_system_info_parses_to_instruction_sets() -> None:
    text = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
            "AVX512_VNNI = 1 | AMX_INT8 = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")
    assert parse_system_info(text) == "SSE3 SSSE3 AVX AVX2 F16C FMA BMI2 AVX512 AVX512_VNNI"
    assert parse_system_info("") == "unknown"


def test_the_script_prints_cmake_arguments_and_refuses_anything_else() -> None:
    script = ROOT / "joulescore" / "backends" / "cpu_build.py"
    out = subprocess.run(["python3", str(script), "portable"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == cmake_args("portable")
    bad = subprocess.run(["python3", str(script), "widest"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


@pytest.mark.skipif(not (ROOT / ".venv" / ".joulescore-setup").exists(), reason="no quickstart set-up here")
def test_a_second_setup_is_skipped_and_silent() -> None:
    for _ in range(2):  # the first may set up again after an edit to what the stamp covers
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh"), "setup"], capture_output=True,
                              text=True, timeout=900, env={**os.environ, "CMAKE_ARGS": ""})
        assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == "", (proc.stdout, proc.stderr)
