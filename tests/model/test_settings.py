"""The one settings model: defaults, validation, engine options by backend, and the flags made from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli, cli_in_process
from pydantic import ValidationError

from joulescore.model.config import RunConfig, describe_error, flag_of
from joulescore.model.options import LlamaCppOptions, OpenAIOptions, TransformersOptions


def test_defaults_follow_from_the_other_settings() -> None:
    assert RunConfig().max_new_tokens == 10 and RunConfig().protocol == "energy-score"
    reasoning = RunConfig(task="reasoning", reasoning="on")
    assert reasoning.protocol == "natural" and reasoning.max_new_tokens == 1024
    natural = RunConfig.model_validate({"task": "summarization", "protocol": "natural"})
    assert natural.max_new_tokens == 64  # the task spec's own budget


def test_flat_engine_keys_go_to_the_engine_chosen_by_backend() -> None:
    config = RunConfig.model_validate({"backend": "transformers", "dtype": "bf16", "device": "cpu"})
    assert isinstance(config.engine, TransformersOptions) and config.engine.dtype == "bf16"
    assert config.engine_kwargs()["dtype"] == "bf16"
    served = RunConfig.model_validate({"backend": "openai", "endpoint": "http://x:1", "request_timeout_s": 5})
    assert isinstance(served.engine, OpenAIOptions) and served.engine_kwargs()["timeout_s"] == 5
    assert isinstance(RunConfig().engine, LlamaCppOptions)


def test_a_config_stored_by_release_0_1_0_still_loads() -> None:
    old = {"model": "smollm2-135m", "task": "chat", "dataset": None, "template": None, "metric": None,
           "reference_field": None, "backend": "llama.cpp", "meter": "auto", "protocol": "energy-score",
           "max_new_tokens": 10, "limit": 3, "warmup": 0, "batch_size": 1, "temperature": 0.0, "seed": 0,
           "threads": None, "n_ctx": 4096, "prompt_cache": False, "idle_baseline_s": 0.0, "reasoning": None,
           "reasoning_family": None, "dtype": None, "quantization": None, "device": None, "endpoint": None,
           "serve": None, "request_timeout_s": 60.0, "retries": 2}
    config = RunConfig.model_validate(old)
    assert isinstance(config.engine, LlamaCppOptions) and config.engine.prompt_cache is False
    assert RunConfig.model_validate(config.model_dump()) == config


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"limit": 0}, "--limit must be at least 1, got 0"),
    ({"idle_baseline_s": float("nan")}, "--idle-baseline"),
    ({"idle_baseline_s": float("inf")}, "--idle-baseline"),
    ({"backend": "llama.cpp", "dtype": "bf16"}, "backend llama.cpp does not take --dtype"),
    ({"backend": "transformers", "dtype": "fp64"}, "unknown dtype 'fp64'"),
    ({"backend": "tensorrt"}, "unknown backend 'tensorrt'"),
    ({"reasoning": "on", "protocol": "energy-score"}, "--reasoning needs --protocol natural"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
])
def test_bad_settings_are_one_sentence_naming_the_flag(settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate(settings)
    assert fragment in describe_error(info.value.errors()[0])


def test_every_setting_is_a_flag_of_run() -> None:
    """The run command's flags are made from the model: each field is there, with its help."""
    proc = cli("run", "--help", env={"COLUMNS": "300"})
    assert proc.returncode == 0
    fields = [n for n in RunConfig.model_fields if n != "engine"] + ["prompt_cache", "n_batch", "dtype", "endpoint"]
    for name in fields:
        assert flag_of(name) in proc.stdout, name
def test_adding_an_engine_option_needs_no_cli_code(db: Path, tmp_path: Path) -> None:
    """--n-batch exists only as a field of LlamaCppOptions: flag, validation, storage and use follow."""
    assert_one_line_error(cli("run", "--n-batch", "0", db=db), "--n-batch must be at least 1")
    assert_one_line_error(cli("run", "--backend", "transformers", "--n-batch", "8", db=db),
                          "backend transformers does not take --n-batch")
    proc = cli("run", "--n-batch", "16", "--limit", "1", "--warmup", "0", "--max-new-tokens", "2", "--json",
               "--no-progress", "--out", str(tmp_path / "out"), db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["config"]["engine"] == {"backend": "llama.cpp", "prompt_cache": True, "n_batch": 16, "gpu_layers": None}
    assert record["model"]["extra"]["n_batch"] == 16


def test_gpu_offload_on_a_cpu_build_of_llama_cpp_is_refused_with_how_to_rebuild(db: Path) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python is a GPU build")
    assert_one_line_error(cli("run", "--gpu-layers", "4", "--limit", "1", db=db), "built without GPU support",
                          "CMAKE_ARGS")


def test_the_watch_before_a_run_is_a_setting(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--busy-probe-s (or $JOULESCORE_BUSY_PROBE_S): how long the machine is watched before the run, stored with it."""
    from joulescore.errors import BadInput

    assert_one_line_error(cli("run", "--busy-probe-s", "0", db=db), "--busy-probe-s must be more than 0")
    assert_one_line_error(cli_in_process("run", "--limit", "1", db=db, env={"JOULESCORE_BUSY_PROBE_S": "soon"}),
                          "$JOULESCORE_BUSY_PROBE_S must be a number of seconds above 0, got 'soon'")
    monkeypatch.setenv("JOULESCORE_BUSY_PROBE_S", "2.5")
    assert RunConfig().busy_probe_s == 2.5 and RunConfig(busy_probe_s=0.5).busy_probe_s == 0.5  # a flag beats it
    for bad in ("0", "-1", "inf", "nan"):
        monkeypatch.setenv("JOULESCORE_BUSY_PROBE_S", bad)
        with pytest.raises(BadInput, match="must be a number of seconds above 0"):
            RunConfig()
    monkeypatch.delenv("JOULESCORE_BUSY_PROBE_S")
    assert RunConfig().busy_probe_s == 1.0
    # the model loads in well under 1.5 s: the watch before the run is the setting's, and the record says so
    proc = cli("run", "--busy-probe-s", "1.5", "--limit", "1", "--warmup", "0", "--max-new-tokens", "2", "--json",
               "--no-progress", "--out", str(tmp_path / "out"), db=db, env={"JOULESCORE_BUSY_PROBE_S": "0.2"})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["config"]["busy_probe_s"] == 1.5
    if record["interference"]["before_run"] is not None:  # None only without /proc/stat
        assert record["interference"]["before_run"]["window_s"] >= 1.5
