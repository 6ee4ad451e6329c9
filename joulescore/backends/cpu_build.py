"""Which instruction sets llama.cpp is built for: the widest this CPU runs, or the portable AVX2 set.

Run by ``scripts/quickstart.sh`` before joulescore is installed, so it needs the standard library alone:
``python3 joulescore/backends/cpu_build.py fast`` prints the CMake arguments of the fastest build,
``... portable`` those of the AVX2 build the set-up falls back to when the fast one fails its smoke test.

A ``-march=native`` build once died with SIGILL on a VM that advertised AMX but did not let processes use
it, so nothing is taken on trust: each instruction set must be in the CPU's flags *and* targetable by the
compiler, and AMX also needs the kernel's permission (``arch_prctl(ARCH_REQ_XCOMP_PERM)``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

#: the set every build had so far; the fallback when the fast build fails
PORTABLE = {"GGML_AVX": True, "GGML_AVX2": True, "GGML_FMA": True, "GGML_F16C": True, "GGML_BMI2": True}
#: ggml option -> (/proc/cpuinfo flags it needs, gcc/clang flags that target it)
X86_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "GGML_AVX": (("avx",), ("-mavx",)),
    "GGML_AVX2": (("avx2",), ("-mavx2",)),
    "GGML_FMA": (("fma",), ("-mfma",)),
    "GGML_F16C": (("f16c",), ("-mf16c",)),
    "GGML_BMI2": (("bmi2",), ("-mbmi2",)),
    "GGML_AVX_VNNI": (("avx_vnni",), ("-mavxvnni",)),
    "GGML_AVX512": (("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
                    ("-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512dq", "-mavx512bw")),
    "GGML_AVX512_VBMI": (("avx512vbmi",), ("-mavx512vbmi",)),
    "GGML_AVX512_VNNI": (("avx512_vnni",), ("-mavx512vnni",)),
    "GGML_AVX512_BF16": (("avx512_bf16",), ("-mavx512bf16",)),
    "GGML_AMX_TILE": (("amx_tile",), ("-mamx-tile",)),
    "GGML_AMX_INT8": (("amx_int8",), ("-mamx-int8",)),
    "GGML_AMX_BF16": (("amx_bf16",), ("-mamx-bf16",)),
}
#: the AVX-512 extensions ggml only uses on top of AVX512F
_NEEDS_AVX512 = ("GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16")
_AMX = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
#: the llama-cpp-python release the set-up builds (``$LLAMA_SPEC`` overrides)
LLAMA_SPEC = "llama-cpp-python==0.3.36"
#: always off: the tools and the multimodal library are not used by joulescore
COMMON = ("-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TOOLS=OFF")


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The first processor's flags in /proc/cpuinfo (``$JOULESCORE_CPUINFO`` stands in for it in tests)."""
    path = cpuinfo or Path(os.environ.get("JOULESCORE_CPUINFO") or "/proc/cpuinfo")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def amx_permitted() -> bool:
    """Whether the kernel lets this process use AMX tile data (Linux >= 5.16, x86-64 only)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata = 158, 0x1023, 18
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata)) == 0
    except (OSError, AttributeError):
        return False


def compiler_targets(flags: tuple[str, ...], compiler: str | None = None) -> bool:
    """Whether the C compiler accepts ``flags`` (an old compiler cannot target AMX or AVX-VNNI)."""
    cc = compiler or os.environ.get("CC") or "cc"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "t.c")
        src.write_text("int main(void) { return 0; }\n")
        try:
            proc = subprocess.run([cc, *flags, "-c", str(src), "-o", str(Path(tmp, "t.o"))],
                                  capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return proc.returncode == 0


def fast_options(flags: frozenset[str], amx: bool,
                 targets: Callable[[tuple[str, ...]], bool] = compiler_targets) -> dict[str, bool]:
    """Each x86 ggml option on where the CPU has it, the compiler targets it and (AMX) the kernel allows it."""
    options: dict[str, bool] = {}
    for option, (needs, cflags) in X86_OPTIONS.items():
        on = all(f in flags for f in needs) and (option not in _AMX or amx)
        if option in _NEEDS_AVX512 or option in _AMX:
            on = on and options.get("GGML_AVX512", False)
        options[option] = bool(on and targets(cflags))
    return options


def cmake_args(build: str, flags: frozenset[str] | None = None, amx: bool | None = None,
               machine: str | None = None) -> list[str]:
    """The CMake arguments of the ``fast`` or ``portable`` build on this machine."""
    if build not in ("fast", "portable"):
        raise ValueError(f"build must be fast or portable, got {build!r}")
    arch = (machine or platform.machine()).lower()
    if arch not in ("x86_64", "amd64"):
        # ggml picks Arm's extensions itself; -mcpu=native has no AMX-like trap there
        return ["-DGGML_NATIVE=" + ("ON" if build == "fast" else "OFF"), *COMMON]
    if build == "portable":
        options = dict(PORTABLE)
    else:
        options = fast_options(cpu_flags() if flags is None else flags, amx_permitted() if amx is None else amx)
    return ["-DGGML_NATIVE=OFF", *(f"-D{k}={'ON' if v else 'OFF'}" for k, v in options.items()), *COMMON]


def isa_of(cmake: list[str]) -> str:
    """The instruction sets a CMake argument list turns on, short: "AVX2 FMA F16C BMI2 AVX512 ..."."""
    on = [a[len("-DGGML_"):-len("=ON")] for a in cmake if a.startswith("-DGGML_") and a.endswith("=ON")]
    return " ".join(o for o in on if o != "NATIVE") or ("native" if "-DGGML_NATIVE=ON" in cmake else "generic")


#: llama.cpp's system-info keys that are not instruction sets
_NOT_ISA = frozenset({"LLAMAFILE", "OPENMP", "REPACK", "ACCELERATE", "KLEIDIAI"})


def parse_system_info(text: str) -> str:
    """The instruction sets in ``llama_print_system_info()``'s CPU line ("CPU : AVX = 1 | AVX2 = 1 | ...")."""
    found: list[str] = []
    for part in text.replace("\n", "|").split("|"):
        key, sep, value = part.rpartition("=")
        name = key.split(":")[-1].strip()
        if sep and value.strip() == "1" and name and name not in _NOT_ISA and name not in found:
            found.append(name)
    return " ".join(found) or "unknown"


def built_isa() -> str:
    """The instruction sets the installed llama-cpp-python's CPU backend was compiled for."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python not installed"
    return parse_system_info(llama_cpp.llama_print_system_info().decode("utf-8", "replace"))


def wheel_dir(spec: str, cmake: str) -> Path:
    """Where the set-up keeps the wheel built from ``spec`` with ``cmake``: pip's cache ignores CMAKE_ARGS."""
    root = os.environ.get("JOULESCORE_WHEELS") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "joulescore", "llama-wheels")
    return Path(root, hashlib.sha256(f"{spec}|{cmake}".encode()).hexdigest()[:16])


def main(argv: list[str]) -> int:
    """``fast|portable``: CMake arguments; ``spec``: the release; ``wheel-dir SPEC ARGS``: its wheel folder."""
    if len(argv) == 1 and argv[0] in ("fast", "portable"):
        print(" ".join(cmake_args(argv[0])))
    elif argv == ["spec"]:
        print(LLAMA_SPEC)
    elif len(argv) == 3 and argv[0] == "wheel-dir":
        print(wheel_dir(argv[1], argv[2]))
    else:
        print("usage: cpu_build.py fast|portable|spec|wheel-dir SPEC CMAKE_ARGS", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
