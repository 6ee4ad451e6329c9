"""Inputs that lie about their size or kind: GGUF length fields past the file's end, FIFOs and devices given as
paths, weight files that are not what they are named.  Each is one line on stderr and exit status 2, before any
engine trusts them (issue 23)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ENGINE_FAST, assert_one_line_error, cli, cli_in_process

#: a run that stops at the model check: nothing loads, nothing is stored
RUN = ("run", *ENGINE_FAST)
LLAMA = json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def _gguf(path: Path, *, tensors: int = 0, entries: list[bytes] | None = None, tail: bytes = b"",
          count: int | None = None) -> Path:
    """A GGUF v3 file: header counts, the given metadata entries (raw bytes) and a tail, little-endian."""
    body = b"".join(entries or [])
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensors, len(entries or []) if count is None else count)
                     + body + tail)
    return path


def _key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


# --- length fields inside a GGUF header ------------------------------------------------------------------------

def test_gguf_string_length_past_the_end_is_one_line(tmp_path: Path, db: Path) -> None:
    # the file: a key claiming 2**60 bytes (reading it raised MemoryError)
    bad = _gguf(tmp_path / "huge-string.gguf", entries=[struct.pack("<Q", 2**60)], tail=b"x" * 16)
    res = cli(*RUN, "--model", str(bad), db=db, timeout=120)
    assert_one_line_error(res, "corrupt GGUF model file", "huge-string.gguf", "runs past the end")


def test_gguf_tensor_count_too_large_for_transformers_is_one_line(tmp_path: Path, db: Path) -> None:
    # the issue's second file: 2**62 tensors (transformers' GGUF reader raised struct.error)
    bad = _gguf(tmp_path / "many-tensors.gguf", tensors=2**62, tail=b"x" * 16)
    res = cli_in_process(*RUN, "--backend", "transformers", "--model", str(bad), db=db, env=OFFLINE)
    assert_one_line_error(res, "corrupt GGUF model file", "tensor count 4611686018427387904")


@pytest.mark.parametrize(("name", "build", "fragment"), [
    ("metadata-count", lambda p: _gguf(p, count=2**40, tail=b"x" * 64), "metadata entry count"),
    ("array-count", lambda p: _gguf(p, entries=[_key("a") + struct.pack("<IIQ", 9, 10, 2**61)]),
     "array item count"),
    ("value-type", lambda p: _gguf(p, entries=[_key("a") + struct.pack("<I", 99) + b"x" * 8]),
     "unknown GGUF value type 99"),
    ("cut-short", lambda p: _gguf(p, entries=[_key("general.architecture") + struct.pack("<I", 4)]),
     "cut short"),
    ("tensor-dims", lambda p: _gguf(p, tensors=1, tail=_key("t") + struct.pack("<I", 2**31) + b"x" * 40),
     "dimensions"),
    ("tensor-offset", lambda p: _gguf(p, tensors=1, tail=_key("t") + struct.pack("<IQIQ", 1, 4, 0, 2**63)),
     "tensor data offset"),
])
def test_every_gguf_length_is_bounded_by_the_file(tmp_path: Path, db: Path, name: str, build, fragment: str) -> None:
    from joulescore.backends.gguf import GgufError, check_header

    bad = build(tmp_path / f"{name}.gguf")
    with pytest.raises(GgufError, match=fragment):
        check_header(bad)
    assert_one_line_error(cli_in_process(*RUN, "--model", str(bad), db=db), "corrupt GGUF model file", fragment)


def test_header_readers_of_the_floor_say_none_for_a_lying_header(tmp_path: Path) -> None:
    from joulescore.backends.gguf import GgufError, context_length, kv_shape, read_metadata

    bad = _gguf(tmp_path / "lying.gguf", entries=[struct.pack("<Q", 2**60)], tail=b"x" * 16)
    assert context_length(bad) is None
    assert kv_shape(bad, "llama") is None
    with pytest.raises(GgufError, match="runs past the end"):
        read_metadata(bad, {"general.architecture"})


def test_a_real_gguf_header_passes_whole() -> None:
    from joulescore.backends.gguf import check_header, read_metadata
    from joulescore.backends.models import resolve_model

    path = resolve_model("smollm2-135m").path
    check_header(path)  # every key, vocabulary array and tensor info read without a complaint
    meta = read_metadata(path, {"general.architecture", "llama.context_length"})
    assert meta == {"general.architecture": "llama", "llama.context_length": 8192}


# --- FIFOs and devices given as paths --------------------------------------------------------------------------

@contextlib.contextmanager
def _fifo(path: Path, rescue_after_s: float = 10.0) -> Iterator[Path]:
    """A FIFO at ``path``; a reader stuck on it is let go (EOF) after a while, so a regression fails, not hangs."""
    os.mkfifo(path)
    done = threading.Event()

    def rescue() -> None:
        done.wait(rescue_after_s)
        while not done.wait(0.2):  # every reader that opens it from now on gets EOF at once
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading just now
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()


def test_fifo_as_model_path_is_refused_not_waited_on(tmp_path: Path, db: Path) -> None:
    with _fifo(tmp_path / "model.gguf") as fifo:
        start = time.monotonic()
        res = cli(*RUN, "--model", str(fifo), db=db, timeout=120)
        assert_one_line_error(res, "model path is a FIFO (named pipe), not a regular file", "model.gguf")
        assert time.monotonic() - start < 15


@pytest.mark.parametrize("backend", ["llama.cpp", "transformers", "onnxruntime", "encoder"])
def test_fifo_and_device_as_model_path_on_every_engine(tmp_path: Path, db: Path, backend: str) -> None:
    task = ("--task", "sentence-similarity") if backend == "encoder" else ()
    with _fifo(tmp_path / "pipe") as fifo:
        res = cli_in_process(*RUN, *task, "--backend", backend, "--model", str(fifo), db=db, env=OFFLINE)
    assert_one_line_error(res, "FIFO (named pipe)")
    res = cli_in_process(*RUN, *task, "--backend", backend, "--model", "/dev/null", db=db, env=OFFLINE)
    assert_one_line_error(res, "model path is a character device")


def test_fifo_inside_a_model_folder_is_refused(tmp_path: Path, db: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(LLAMA)
    with _fifo(folder / "tokenizer_config.json"):
        res = cli_in_process(*RUN, "--backend", "transformers", "--model", str(folder), db=db, env=OFFLINE)
    assert_one_line_error(res, "holds tokenizer_config.json, which is a FIFO")


def test_fifo_as_dataset_and_sweep_plan_is_refused(tmp_path: Path, db: Path) -> None:
    with _fifo(tmp_path / "rows.jsonl") as fifo:
        res = cli_in_process(*RUN, "--model", "/nonexistent/m.gguf", "--dataset", str(fifo), "--template", "Say: {t}",
                             db=db)
    assert_one_line_error(res, "cannot read dataset", "FIFO (named pipe), not a regular file")
    with _fifo(tmp_path / "plan.yaml") as fifo:
        res = cli_in_process("sweep", str(fifo), db=db)
    assert_one_line_error(res, "cannot read sweep plan", "FIFO")


def test_fifo_as_grid_and_accelerator_file_is_refused(tmp_path: Path, db: Path) -> None:
    from tests.impact.test_impact import make_run

    make_run(db)
    with _fifo(tmp_path / "grid.csv") as fifo:
        res = cli_in_process("impact", "run-a", "--grid-file", str(fifo), db=db)
    assert_one_line_error(res, "grid file", "FIFO (named pipe)")
    with _fifo(tmp_path / "accelerators.csv") as fifo:
        res = cli_in_process("project", "--list", "--hardware-file", str(fifo))
    assert_one_line_error(res, "accelerator file", "FIFO (named pipe)")
    assert_one_line_error(cli_in_process("project", "--list", "--hardware-file", "/dev/zero"), "character device")


# --- weight files that are not what they are named -------------------------------------------------------------

def _folder(root: Path, name: str, **files: bytes) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(LLAMA)
    for file, data in files.items():
        (folder / file).write_bytes(data)
    return folder


#: bytes that are no safetensors file: a header length far past the file's end
NOISE = bytes((i * 167 + 13) % 256 for i in range(3000))


def test_random_safetensors_is_one_line(tmp_path: Path, db: Path) -> None:
    folder = _folder(tmp_path, "noise", **{"model.safetensors": NOISE})
    res = cli(*RUN, "--backend", "transformers", "--model", str(folder), db=db, env=OFFLINE, timeout=300)
    assert_one_line_error(res, "corrupt weight file model.safetensors", str(folder))


@pytest.mark.parametrize(("backend", "extra"), [("onnxruntime", ("--quantization", "int8")),
                                                ("encoder", ("--task", "sentence-similarity"))])
def test_random_safetensors_on_the_other_engines(tmp_path: Path, db: Path, backend: str,
                                                 extra: tuple[str, ...]) -> None:
    folder = _folder(tmp_path, "noise", **{"model.safetensors": NOISE})
    res = cli_in_process(*RUN, *extra, "--backend", backend, "--model", str(folder), db=db, env=OFFLINE)
    assert_one_line_error(res, "corrupt weight file model.safetensors")


def test_cut_shard_and_random_pickle_are_one_line(tmp_path: Path, db: Path) -> None:
    # a shard listed by its index whose header promises more bytes than the file holds
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    shard = struct.pack("<Q", len(header)) + header + b"\0" * 16
    index = json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}}).encode()
    sharded = _folder(tmp_path, "sharded", **{"model.safetensors.index.json": index,
                                             "model-00001-of-00001.safetensors": shard})
    assert_one_line_error(cli_in_process(*RUN, "--backend", "transformers", "--model", str(sharded), db=db,
                                         env=OFFLINE), "corrupt weight file model-00001-of-00001.safetensors")
    # MiniLM with a pytorch_model.bin that is no pickle for weights: transformers' loader raises UnpicklingError
    from joulescore.backends.models import resolve_encoder

    pickle = tmp_path / "pickle"
    shutil.copytree(resolve_encoder("minilm-l6").path, pickle, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    (pickle / "pytorch_model.bin").write_bytes(NOISE)
    res = cli_in_process(*RUN, "--task", "sentence-similarity", "--backend", "encoder", "--model", str(pickle),
                         db=db, env=OFFLINE)
    assert_one_line_error(res, "transformers cannot load encoder", "Weights only load failed")


def test_fifo_as_model_path_on_vllm(tmp_path: Path, db: Path) -> None:
    fake = Path(__file__).parents[1] / "fake_vllm"  # vLLM's API without a GPU: the check comes before it loads
    env = {"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    with _fifo(tmp_path / "pipe") as fifo:
        res = cli(*RUN, "--backend", "vllm", "--model", str(fifo), db=db, env=env, timeout=120)
    assert_one_line_error(res, "model path is a FIFO (named pipe), not a regular file")


# --- compare-reasoning: a bad model, task or meter is its only line ---------------------------------------------

def test_compare_reasoning_with_a_missing_model_prints_one_line(db: Path) -> None:
    res = cli("compare-reasoning", "/nonexistent/model.gguf", "--limit", "1", db=db, timeout=120)
    assert_one_line_error(res, "model file not found: /nonexistent/model.gguf")
    assert "mode off" not in res.stderr and res.stdout == ""


@pytest.mark.parametrize(("args", "fragment"), [
    (("--task", "no-such-task"), "unknown task 'no-such-task'"),
    (("--meter", "no-such-meter"), "unknown meter 'no-such-meter'"),
    (("/dev/null",), "model path is a character device"),
    (("corrupt",), "corrupt GGUF model file"),
])
def test_compare_reasoning_refuses_each_input_before_the_first_mode(tmp_path: Path, db: Path,
                                                                   args: tuple[str, ...], fragment: str) -> None:
    if args == ("corrupt",):
        args = (str(_gguf(tmp_path / "c.gguf", entries=[struct.pack("<Q", 2**60)], tail=b"x" * 16)),)
    assert_one_line_error(cli_in_process("compare-reasoning", *args, "--limit", "1", db=db), fragment)
