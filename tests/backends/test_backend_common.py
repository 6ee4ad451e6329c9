"""What the local engines share, checked without loading any engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from joulescore.backends import ENGINES, load_backend
from joulescore.backends.base import SteadyWindow, context_overflow
from joulescore.backends.hf_common import OFFLINE_ENV, offline_env, overflow

REPO = Path(__file__).resolve().parents[2]


def test_importing_hf_common_leaves_the_environment_alone() -> None:
    code = ("import json, os; before = dict(os.environ); import joulescore.backends.hf_common; "
            "print(json.dumps([k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)]))")
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV} | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=REPO)
    assert json.loads(out.stdout) == []


def test_offline_env_is_set_at_load_time_without_overriding_the_user(monkeypatch) -> None:
    for key in OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    offline_env()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["TQDM_DISABLE"] == "0"


def test_one_context_check_for_every_engine() -> None:
    assert context_overflow(100, 28, 128) is None
    assert context_overflow(100, 29, 128) == "prompt of 100 tokens + 29 new exceeds the context of 128"
    assert overflow(100, [90, 100], 28, 128) is None
    failed = overflow(100, [90, 100], 29, 128)
    assert failed is not None and [g.input_tokens for g in failed] == [90, 100]
    assert all(g.finish_reason == "error" and g.error == context_overflow(100, 29, 128) for g in failed)


def _window(rows: int) -> tuple[SteadyWindow, list[str]]:
    events: list[str] = []
    return SteadyWindow(rows, lambda: events.append("full"), lambda n: events.append(f"steady {n}")), events


def test_the_steady_window_counts_tokens_made_while_the_batch_was_full() -> None:
    window, events = _window(3)
    window.step(tokens=3, started=3)  # first tokens: the batch fills, none counts
    window.step(tokens=3)
    window.step(tokens=2, ended=1)  # one row's end of sequence (not passed as a token) closes it
    window.step(tokens=2, ended=2)  # after the close: nothing counts, nothing fires again
    assert events == ["full", "steady 5"]


def test_a_window_that_closes_as_it_opens_or_before_is_not_reported() -> None:
    window, events = _window(2)
    window.step(tokens=2, started=2, ended=2)  # one token each and done: no steady state to measure
    assert events == ["full"]
    window, events = _window(3)
    window.step(tokens=2, started=2)
    window.step(tokens=2, ended=1)  # a row ends before the third starts: the batch was never full
    window.step(tokens=2, started=1)
    window.step(tokens=2, ended=2)
    assert events == ["full"]


def test_one_token_at_a_time_from_request_threads() -> None:
    window, events = _window(2)
    window.step(started=1)
    window.step(tokens=1)  # only one row has started: not yet full
    window.step(started=1)
    for _ in range(4):
        window.step(tokens=1)
    window.step(started=0, ended=1)
    assert events == ["full", "steady 4"]


def test_the_engine_traits_are_read_without_importing_any_engine() -> None:
    code = ("import sys, json; from joulescore.backends import ENGINES; traits = {n: e.kind for n, e in ENGINES.items()}; "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'llama_cpp', 'vllm', 'faster_whisper', "
            "'onnxruntime', 'httpx') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert json.loads(out.stdout) == []


def test_each_engine_entry_says_what_its_loaded_backend_says() -> None:
    """The registry's kind and inputs (read before loading) match the class's (read after), for every engine
    installed here."""
    checked = []
    for name, engine in ENGINES.items():
        try:
            module = import_module(engine.module)
        except ImportError:
            continue
        cls = getattr(module, engine.cls)
        assert (cls.kind, cls.inputs) == (engine.kind, engine.inputs), name
        checked.append(name)
    assert {"llama.cpp", "encoder", "openai"} <= set(checked)
    assert {n for n, e in ENGINES.items() if e.kind == "media"} == {n for n, e in ENGINES.items() if e.inputs != "text"}


def test_an_engine_not_installed_is_one_line_naming_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "joulescore.backends.vllm_engine", None)  # import fails as if vLLM were absent
    with pytest.raises(Exception, match=r"^backend 'vllm' needs vllm: pip install 'joulescore\[vllm\]' \(") as err:
        load_backend("vllm", "some/model")
    assert "\n" not in str(err.value)


def test_a_gguf_load_parses_its_file_once_and_puts_gguf_back(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    from joulescore.backends.hf_common import gguf_parsed_once

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with pytest.raises(RuntimeError), gguf_parsed_once():
        reader = gguf.GGUFReader(str(path))
        assert gguf.GGUFReader(str(path)) is reader  # the tokenizer, config and weight loaders share one parse
        assert [t.name for t in reader.tensors] == ["token_embd.weight"]
        assert reader.tensors[0].data.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        raise RuntimeError("a load that fails")
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader_class, name_map)  # put back, even after a failure
    assert gguf.GGUFReader(str(path)) is not gguf.GGUFReader(str(path))
