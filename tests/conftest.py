"""Shared helpers: run the real CLI in a subprocess against a temporary database."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

# The suite shares its machine (other tests' servers, a CI box's neighbours): runs here are not marked
# disturbed by that, unless a test sets its thresholds itself (the interference tests do, with flags).
os.environ.setdefault("JOULESCORE_DISTURBED_CPU_PCT", "100")
os.environ.setdefault("JOULESCORE_DISTURBED_STEAL_PCT", "100")
# Every run watches the machine before it starts (1 s by default): a fifth of that tells the suite's runs apart
# from an idle machine as well; the tests of busy-machine detection set the watch they need themselves.
os.environ.setdefault("JOULESCORE_BUSY_PROBE_S", "0.2")

#: /proc/cpuinfo of other machines, for ``--cpu-identity``
CPUINFO_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cpuinfo"
CPU_IDENTITIES = ("host", *sorted(p.name for p in CPUINFO_FIXTURES.iterdir() if p.is_file()))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-identity", choices=CPU_IDENTITIES, default="host",
                     help="run the whole suite (its CLI subprocesses too) as if on this CPU: the /proc/cpuinfo in "
                          "tests/fixtures/cpuinfo/NAME stands in for the machine's (host: the machine's own)")
    parser.addoption("--host-meters", action="store_true",
                     help="let the suite see this machine's RAPL counters and GPUs (hidden by default, so that "
                          "every test answers the same on any machine)")


#: what hides the machine's energy counters and GPUs from the suite (CUDA, NVML, ROCm and amdsmi honour these)
HIDDEN_METERS = {"JOULESCORE_POWERCAP_ROOT": str(Path(__file__).resolve().parent / "fixtures" / "no-powercap"),
                 "CUDA_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": ""}


def pytest_configure(config: pytest.Config) -> None:
    """The machine the session runs as, in os.environ so that the CLI's subprocesses inherit it.

    ``$JOULESCORE_CPUINFO`` names the CPU (``--cpu-identity``); RAPL and GPUs are hidden unless
    ``--host-meters``: tests that want them build a powercap tree or load a binding double.
    """
    from joulescore import hardware

    if not config.getoption("--host-meters"):
        os.environ.update(HIDDEN_METERS)

    identity = config.getoption("--cpu-identity")
    if identity == "host":
        os.environ.pop(hardware.CPUINFO_ENV, None)
    else:
        os.environ[hardware.CPUINFO_ENV] = str(CPUINFO_FIXTURES / identity)
    hardware.cpu_info.cache_clear()


def pytest_report_header(config: pytest.Config) -> str:
    from joulescore import hardware

    return f"joulescore CPU identity: {config.getoption('--cpu-identity')} ({hardware.cpu_info().display})"


def cli(*args: str, db: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``joulescore ARGS`` as a user would, capturing its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    # A user's joulescore keeps its compiled bytecode; without this every test process recompiles it (~0.1 s each)
    if "PYTHONDONTWRITEBYTECODE" not in (env or {}):
        full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "joulescore.cli", *args]
    if db is not None:
        cmd += ["--db", str(db)]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2, one line on stderr naming the problem, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@contextlib.contextmanager
def _piped_consoles() -> Iterator[None]:
    """The CLI's two consoles as a subprocess's would be: piped (full width, no colour), whatever pytest's streams are."""
    from joulescore.cli.app import err, out
    from joulescore.cli.console import PIPE_WIDTH

    saved = [(c, c._width, c._color_system) for c in (out, err)]
    for console in (out, err):
        console._width, console._color_system = PIPE_WIDTH, None
    try:
        yield
    finally:
        for console, width, colours in saved:
            console._width, console._color_system = width, colours


def cli_in_process(*args: str, db: Path | None = None, env: dict[str, str] | None = None,
                   timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """What :func:`cli` returns, from ``joulescore.cli.main`` called in this process: no interpreter start-up.

    For cases answered before any model loads (argument, file and range checks) whose kind of answer a
    :func:`cli` subprocess run also checks, and for model runs whose engine (torch, transformers, onnxruntime)
    this process has loaded already, where no subprocess boundary is under test.  argv, the environment (with ``COLUMNS=200``), stdout and stderr
    are the subprocess's: strict UTF-8 on stdout, backslash escapes on stderr, piped consoles; an uncaught
    exception prints its traceback and exits 1 as the interpreter would.  ``timeout`` is not enforced.
    """
    from joulescore.cli import main

    argv = ["joulescore", *args, *(["--db", str(db)] if db is not None else [])]
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", newline="\n", write_through=True)
    stderr = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", newline="\n",
                              write_through=True)
    sigterm = signal.getsignal(signal.SIGTERM)
    code: int = 0
    with mock.patch.dict(os.environ, {"COLUMNS": "200", **(env or {})}), mock.patch.object(sys, "argv", argv), \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), _piped_consoles():
        try:
            main()
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: B036  (what the interpreter does with an uncaught exception)
            traceback.print_exc()
            code = 1
        finally:
            signal.signal(signal.SIGTERM, sigterm)
            stdout.flush()
            stderr.flush()
    return subprocess.CompletedProcess(argv, code, out_bytes.getvalue().decode("utf-8"),
                                       err_bytes.getvalue().decode("utf-8"))


#: a function that runs the CLI as :func:`cli` does
Cli = Callable[..., subprocess.CompletedProcess[str]]

#: parametrised tests that have had their one subprocess run this session
_SUBPROCESS_RUN: set[str] = set()


@pytest.fixture
def cli_case(request: pytest.FixtureRequest) -> Cli:
    """:func:`cli` for the first case of a parametrised test to run, :func:`cli_in_process` for its other cases.

    Each such test keeps one true subprocess run (exit status, one line on stderr and no traceback, as a user
    sees them); its other cases check the same answer without paying for the interpreter start-up.
    """
    key = f"{request.node.path}::{request.node.originalname}"
    if key in _SUBPROCESS_RUN:
        return cli_in_process
    _SUBPROCESS_RUN.add(key)
    return cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


#: a few prompts, fast: what the engine tests give every run
ENGINE_FAST = ("--limit", "2", "--warmup", "0", "--max-new-tokens", "3", "--json", "--no-progress")


@pytest.fixture(scope="session")
def smollm2_transformers_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    """The default SmolLM2 GGUF on transformers (fp32, batch 1, ``ENGINE_FAST``): its record and answers.

    Run once a session through the real CLI: dequantizing the GGUF is most of a run's time, and the engine
    tests and the model-folder tests both check this same run.
    """
    db = tmp_path_factory.mktemp("smollm2-transformers") / "results.db"
    # in this process (no subprocess boundary is under test): the session's other fixtures load torch here anyway
    proc = cli_in_process("run", *ENGINE_FAST, "--backend", "transformers", "--model", "smollm2-135m", "--dtype", "fp32",
                          db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    with sqlite3.connect(db) as conn:
        texts = [r[0] for r in conn.execute("SELECT text FROM results WHERE run_id=? ORDER BY prompt_index",
                                            (record["run_id"],))]
    return record, texts


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from joulescore.backends.models import resolve_model

    return resolve_model("smollm2-135m").path


@functools.cache
def _gguf_cached() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """gguf's reader and tensor-name map, each kept by its arguments for the session (taken before any patch)."""
    import gguf

    return functools.cache(gguf.GGUFReader), functools.cache(gguf.get_tensor_name_map)


@contextlib.contextmanager
def gguf_read_once() -> Iterator[None]:
    """transformers parsing a GGUF once a session, for the fixtures that build folders from it.

    transformers reads the file's metadata anew for its tokenizer, its config and its weights, and rebuilds
    gguf's tensor-name map for every module it walks (~10 s of CPU for SmolLM2 together).  Here the reader
    is one per file (read-only, memory-mapped) and the map one per architecture; what is built is byte for
    byte the same.  The CLI's own GGUF runs are untouched.
    """
    import gguf

    reader, names = _gguf_cached()
    with mock.patch.object(gguf, "GGUFReader", reader), mock.patch.object(gguf, "get_tensor_name_map", names):
        yield


@pytest.fixture(scope="session")
def smol_tokenizer(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """SmolLM2's tokenizer (and chat template), read from its GGUF file and saved as a tokenizer folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is first imported: nothing downloads
    from transformers import AutoTokenizer

    target = tmp_path_factory.mktemp("smol-tokenizer")
    with gguf_read_once():
        tokenizer = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    tokenizer.save_pretrained(target)
    return target


#: what a causal model folder takes from a tokenizer folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def copy_tokenizer(src: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, target / name)


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, smol_tokenizer: Path) -> Path:
    """SmolLM2-135M as a plain model folder: the GGUF's weights, dequantized, copied into a model built from config.

    Built once a session and shared: a run from this folder loads in a fraction of a second, where each run
    from the GGUF parses and dequantizes it again (~17 s of CPU).  Tests that are about an engine, not about
    reading a GGUF, run this folder; the GGUF route stays covered by ``smollm2_transformers_run``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM

    with gguf_read_once():
        net = AutoModelForCausalLM.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name,
                                                   dtype=torch.float32)
    plain = AutoModelForCausalLM.from_config(net.config, dtype=torch.float32)
    plain.load_state_dict(net.state_dict())
    plain.generation_config = net.generation_config
    target = tmp_path_factory.mktemp("smollm2-folder") / "SmolLM2-135M-Instruct"
    plain.save_pretrained(target)
    copy_tokenizer(smol_tokenizer, target)
    return target
