#!/usr/bin/env bash
# One command from a fresh checkout: set up .venv, then either rate the default
# model (`run`, extra arguments go to `joulescore run`) or pass the tests (`test`).
#
# The set-up runs once: it is skipped while a stamp of what it depends on
# (pyproject.toml, this script, the build choice, the Python) is unchanged.
# Its pip output goes to .venv/setup.log, shown only when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-run}"
shift || true
case "$what" in run|test|setup) ;; *) echo "usage: scripts/quickstart.sh run|test|setup [args]" >&2; exit 2 ;; esac

PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
BUILD=(.venv/bin/python joulescore/backends/cpu_build.py)
LLAMA_SPEC="${LLAMA_SPEC:-$("${BUILD[@]}" spec)}"
LOG=.venv/setup.log

quiet() {  # run a set-up step with its output in the log; on failure show the log's end and stop
    if ! "$@" >>"$LOG" 2>&1; then
        echo "quickstart: failed: $*" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

# llama.cpp is built from source for the widest instruction set this CPU runs, the compiler targets and,
# for AMX, the kernel allows (joulescore/backends/cpu_build.py); if that build fails its smoke test it
# falls back to the portable AVX2 build.  With the CUDA compiler and an NVIDIA GPU present, it is built
# with CUDA so that its layers run on the GPU.  CMAKE_ARGS set by the user are taken as they are.
if [ -n "${CMAKE_ARGS:-}" ]; then
    FAST="$CMAKE_ARGS"; PORTABLE=""
else
    FAST=$("${BUILD[@]}" fast)
    PORTABLE=$("${BUILD[@]}" portable)
    if command -v nvcc >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
        echo "quickstart: nvcc and an NVIDIA GPU found: building llama.cpp with CUDA" >&2
        FAST="$FAST -DGGML_CUDA=ON"; PORTABLE="$PORTABLE -DGGML_CUDA=ON"
    fi
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

install_llama() {  # $1: CMake arguments; builds the wheel once per (version, arguments), then installs it
    local dir  # one folder per (release, CMake arguments): pip's own wheel cache ignores CMAKE_ARGS
    dir=$("${BUILD[@]}" wheel-dir "$LLAMA_SPEC" "$1")
    if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "quickstart: building llama.cpp ($1); a few minutes, once" >&2
        rm -rf "$dir.partial"
        quiet env CMAKE_ARGS="$1" .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir \
            --no-binary llama-cpp-python -w "$dir.partial" "$LLAMA_SPEC"
        rm -rf "$dir" && mv "$dir.partial" "$dir"
    fi
    quiet .venv/bin/python -m pip install -q --no-deps --force-reinstall "$dir"/llama_cpp_python-*.whl
}

smoke() { .venv/bin/python -m joulescore.backends.smoke >>"$LOG" 2>&1; }

stamp=$( { cat pyproject.toml scripts/quickstart.sh joulescore/backends/cpu_build.py
           echo "$FAST|$TORCH_SPEC|$LLAMA_SPEC"; .venv/bin/python -VV; } | sha256sum | cut -c1-64)
if [ "$(cat .venv/.joulescore-setup 2>/dev/null)" != "$stamp" ]; then
    : >"$LOG"
    echo "quickstart: setting up .venv (log: $LOG)" >&2
    quiet .venv/bin/python -m pip install -q --upgrade pip
    # torch first, pinned, so that the engines' "torch>=2.2" is already met and pip
    # never pulls a multi-GB CUDA build onto a CPU machine (TORCH_SPEC overrides).
    quiet .venv/bin/python -m pip install -q "$TORCH_SPEC"
    install_llama "$FAST"
    quiet .venv/bin/python -m pip install -q -e ".[all,test]"
    # A build the CPU cannot run dies with SIGILL in the smoke test: fall back to the portable build once.
    if ! smoke; then
        if [ -n "$PORTABLE" ] && [ "$PORTABLE" != "$FAST" ]; then
            echo "quickstart: the fast llama.cpp build failed its smoke test here; using the portable AVX2 build" >&2
            install_llama "$PORTABLE"
        fi
        quiet .venv/bin/python -m joulescore.backends.smoke
    fi
    echo "$stamp" >.venv/.joulescore-setup
    echo "quickstart: .venv is ready ($(.venv/bin/python -c 'from joulescore.backends.cpu_build import built_isa; print(built_isa())'))" >&2
fi

case "$what" in
    run)  exec .venv/bin/joulescore run "$@" ;;
    test) exec .venv/bin/python -m pytest -q --durations=15 "$@" ;;  # the 15 slowest, so that regressions show
    setup) ;;
esac
