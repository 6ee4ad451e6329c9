"""Each engine on a few prompts, through the real CLI (tiny limits, 3 new tokens)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ENGINE_FAST, Cli, assert_one_line_error, cli, cli_in_process

FAST = ENGINE_FAST


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export (and one int8 quantization) for the whole test session."""
    path = tmp_path_factory.mktemp("joulescore-cache")
    os.environ["JOULESCORE_CACHE_DIR"] = str(path)
    return path


def _run(db: Path, *args: str, run: Cli = cli) -> dict:
    proc = run("run", *FAST, *args, db=db)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _check(record: dict, backend: str, quantization: str, prompts: int = 2) -> None:
    assert record["status"] == "complete"
    assert record["model"]["backend"] == backend and record["model"]["quantization"] == quantization
    assert record["counts"]["succeeded"] == prompts
    assert record["counts"]["output_tokens"] == 3 * prompts  # energy-score: exactly the new tokens asked for
    energy = record["energy"]
    assert energy["total_j"] > 0 and record["meter"]["kind"] in ("estimated", "measured", "mixed")
    assert energy["prefill_j"] + energy["decode_j"] == pytest.approx(energy["total_j"], rel=1e-6)


def test_transformers_fp32_batch_1(smollm2_transformers_run: tuple[dict, list[str]]) -> None:
    record, _ = smollm2_transformers_run  # run --backend transformers --dtype fp32, shared with test_model_folders
    _check(record, "transformers", "fp32")
    assert record["steady_state"] is None and record["batching"]["batch_size"] == 1


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning",
                            "ignore:torch.quantize_per_tensor:UserWarning")  # torch's, raised in this process
def test_transformers_int8_batches_with_a_steady_window(db: Path, smollm2_folder: Path) -> None:
    # SmolLM2 as a model folder (shared this session): the same weights, without dequantizing the GGUF again
    # in this process, where the folder was built (its import of torch and transformers already paid)
    record = _run(db, "--backend", "transformers", "--model", str(smollm2_folder), "--quantization", "int8",
                  "--batch-size", "2", "--limit", "4", run=cli_in_process)
    _check(record, "transformers", "int8-dynamic", prompts=4)
    assert record["batching"] == {**record["batching"], "batch_size": 2, "mode": "static"}
    steady = record["steady_state"]
    assert steady["batches"] == 2 and steady["output_tokens"] == 2 * 2 * (3 - 1)
    assert steady["window_s"] > 0 and steady["j_per_output_token"] > 0


def test_onnxruntime_fp32_and_int8_share_one_cached_export(db: Path, onnx_cache: Path, smollm2_folder: Path) -> None:
    # the session's SmolLM2 folder: its export is this session's one ONNX export of SmolLM2
    model = ("--backend", "onnxruntime", "--model", str(smollm2_folder))
    first = _run(db, *model, "--batch-size", "2")
    _check(first, "onnxruntime", "fp32")
    assert first["model"]["extra"]["kv_cache"] is True and first["model"]["extra"]["export"] == "exported for this run"
    # the later runs in this process (what is on disk is what is shared, not the process): no second start-up
    int8 = _run(db, *model, "--quantization", "int8", run=cli_in_process)
    _check(int8, "onnxruntime", "int8-dynamic")
    again = _run(db, *model, run=cli_in_process)
    assert again["model"]["extra"]["export"] == "cached"
    assert again["model"]["extra"]["onnx_file"] == first["model"]["extra"]["onnx_file"]
    assert str(onnx_cache) in again["model"]["extra"]["onnx_file"]
    # greedy decoding of the same fp32 weights: the same answers at batch 1 and batch 2
    assert [r for r in _texts(db, again["run_id"])] == [r for r in _texts(db, first["run_id"])]


def _texts(db: Path, run_id: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT text FROM results WHERE run_id=? ORDER BY prompt_index", (run_id,))]


def test_settings_an_engine_does_not_take_are_one_line_errors(db: Path) -> None:
    assert_one_line_error(cli("run", *FAST, "--dtype", "bf16", db=db), "llama.cpp", "--dtype")
    assert_one_line_error(cli_in_process("run", *FAST, "--backend", "transformers", "--dtype", "bf16",
                                         "--quantization", "int8", db=db), "int8")
    assert_one_line_error(cli_in_process("run", *FAST, "--backend", "onnxruntime", "--quantization", "int4", db=db),
                          "int4")
    assert_one_line_error(cli_in_process("run", *FAST, "--backend", "openai", db=db), "--endpoint")
