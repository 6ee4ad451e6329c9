#!/usr/bin/env bash
# One command from a fresh checkout: set up .venv, then either rate the default
# model (`run`, extra arguments go to `joulescore run`) or pass the tests (`test`).
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-run}"
shift || true

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip

# llama.cpp builds from source.  A portable AVX2 build: a -march=native build
# can use instructions (AMX) that a VM advertises but does not let a process use.
# With the CUDA compiler and an NVIDIA GPU present, it is built with CUDA so that
# its layers run on the GPU (a CUDA compiler alone, without a GPU, builds for CPU).
CPU_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF"
if [ -z "${CMAKE_ARGS:-}" ] && command -v nvcc >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    echo "quickstart: nvcc and an NVIDIA GPU found: building llama.cpp with CUDA" >&2
    CPU_ARGS="$CPU_ARGS -DGGML_CUDA=ON"
fi
export CMAKE_ARGS="${CMAKE_ARGS:-$CPU_ARGS}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# torch first, pinned, so that the engines' "torch>=2.2" is already met and pip
# never pulls a multi-GB CUDA build onto a CPU machine (TORCH_SPEC overrides).
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[all,test]"

# A cached wheel built elsewhere can die with SIGILL on this CPU: check, rebuild once if so.
if ! .venv/bin/python -m joulescore.backends.smoke >/dev/null 2>&1; then
    echo "llama.cpp failed its smoke test on this CPU; rebuilding it from source" >&2
    .venv/bin/python -m pip install -q --no-cache-dir --force-reinstall --no-deps llama-cpp-python
    .venv/bin/python -m joulescore.backends.smoke
fi

case "$what" in
    run)  exec .venv/bin/joulescore run "$@" ;;
    test) exec .venv/bin/python -m pytest -q --durations=15 "$@" ;;  # the 15 slowest, so that regressions show
    setup) ;;
    *) echo "usage: scripts/quickstart.sh run|test|setup [args]" >&2; exit 2 ;;
esac
