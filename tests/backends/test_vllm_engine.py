"""The vLLM engine through the real CLI, over a stand-in ``vllm`` at the import boundary (no GPU here).

tests/fake_vllm/vllm is put on PYTHONPATH: it schedules continuously (at most
max_num_seqs running, one token per step each) and reports per-request metrics
under vLLM's old or new names.  What is checked is joulescore's side: the
arguments it gives vLLM, the steady-state window, the per-request times and the
record, and the one-line errors.
"""

from __future__ import annotations

import json
import os
import struct
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Cli, assert_one_line_error, cli

from joulescore.backends.vllm_facts import count_safetensors, request_times, split_revision, weights_summary

FAKE = Path(__file__).parents[1] / "fake_vllm"
RUN = ("run", "--backend", "vllm", "--model", "some/model", "--warmup", "0", "--json", "--no-progress")


def run_vllm(db: Path, *args: str, log: Path | None = None, metrics: str = "v1"):  # type: ignore[no-untyped-def]
    env = {"PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")]),
           "FAKE_VLLM_METRICS": metrics}
    if log is not None:
        env["FAKE_VLLM_LOG"] = str(log)
    return cli(*RUN, *args, db=db, env=env)


def test_batch_runs_continuously_with_a_steady_window(db: Path, tmp_path: Path) -> None:
    log = tmp_path / "llm_args.json"
    proc = run_vllm(db, "--batch-size", "4", "--limit", "4", "--max-new-tokens", "3", log=log)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete"
    assert record["counts"]["succeeded"] == 4 and record["counts"]["output_tokens"] == 4 * 3
    assert record["batching"] == {"batch_size": 4, "mode": "continuous", "attribution": record["batching"][
        "attribution"]} and record["batching"]["attribution"]
    steady = record["steady_state"]
    # full after step 1 (every row's first token), closed at step 3 (all finish): steps 2 and 3 are in it
    assert steady is not None and steady["output_tokens"] == 4 * 2 and steady["batches"] == 1
    assert steady["energy_j"] > 0 and steady["window_s"] > 0
    assert record["latency"]["ttft_s"]["p50"] > 0 and record["latency"]["e2e_s"]["p50"] > record["latency"][
        "ttft_s"]["p50"]
    assert record["model"]["backend"] == "vllm" and record["model"]["extra"]["batching"] == "continuous"
    assert any("NVML measures the whole GPU" in n for n in record["meter"]["notes"])
    args = json.loads(log.read_text())
    # stats on (else RequestOutput.metrics is None), the context as max_model_len, vLLM's own dtype
    assert args["disable_log_stats"] is False and args["max_model_len"] == 4096
    assert args["dtype"] == "auto" and args["model"] == "some/model" and "max_num_seqs" not in args


def test_engine_options_reach_vllm(db: Path, tmp_path: Path) -> None:
    log = tmp_path / "llm_args.json"
    proc = run_vllm(db, "--limit", "2", "--max-new-tokens", "2", "--dtype", "bf16", "--max-num-seqs", "8",
                    "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5", "--enforce-eager",
                    "--model", "org/name@abc123", log=log)
    assert proc.returncode == 0, proc.stderr
    args = json.loads(log.read_text())
    assert args["dtype"] == "bfloat16" and args["max_num_seqs"] == 8 and args["tensor_parallel_size"] == 2
    assert args["gpu_memory_utilization"] == 0.5 and args["enforce_eager"] is True
    assert args["model"] == "org/name" and args["revision"] == "abc123"
    record = json.loads(proc.stdout)
    assert record["model"]["extra"]["max_num_seqs"] == 8 and record["model"]["extra"]["revision"] == "abc123"
    assert record["batching"]["mode"] == "continuous" and record["steady_state"] is None  # batch 1


def test_a_shipped_alias_is_given_to_vllm_as_its_gguf_file(db: Path, tmp_path: Path, smollm2_gguf: Path) -> None:
    log = tmp_path / "llm_args.json"
    proc = run_vllm(db, "--limit", "1", "--max-new-tokens", "2", "--model", "smollm2-135m", log=log)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(log.read_text())["model"] == str(smollm2_gguf.resolve())
    model = json.loads(proc.stdout)["model"]
    assert model["name"] == "SmolLM2-135M-Instruct" and model["path"] == str(smollm2_gguf.resolve())
    assert model["extra"]["size_bytes"] == smollm2_gguf.stat().st_size and model["extra"]["weights"] == "gguf"


def test_natural_lengths_with_old_metrics_names(db: Path) -> None:
    proc = run_vllm(db, "--batch-size", "4", "--limit", "4", "--protocol", "natural", "--max-new-tokens", "16",
                    metrics="v0")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    counts = record["counts"]
    assert counts["succeeded"] == 4 and counts["truncated"] == 0  # each stopped at its own EOS
    lengths = counts["output_tokens_per_query"]
    assert 2 <= lengths["p50"] <= lengths["max"] <= 5
    steady = record["steady_state"]
    assert steady is not None and 0 <= steady["output_tokens"] < counts["output_tokens"]


def test_more_rows_than_engine_slots_leaves_no_window(db: Path, tmp_path: Path) -> None:
    # two slots for four rows: the first rows finish before the last start, so the batch is never full
    proc = run_vllm(db, "--batch-size", "4", "--limit", "4", "--max-new-tokens", "3", "--max-num-seqs", "2",
                    metrics="none")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["counts"]["succeeded"] == 4 and record["counts"]["output_tokens"] == 12
    assert record["steady_state"] is None
    assert record["energy"]["prefill_j"] >= 0 and record["energy"]["decode_j"] >= 0
    assert record["latency"]["ttft_s"]["max"] > 0  # from the steps seen, metrics being off


def test_prompts_over_the_context_fail_alone(db: Path) -> None:
    proc = run_vllm(db, "--batch-size", "2", "--limit", "2", "--n-ctx", "128", "--max-new-tokens", "120")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["counts"]["failed"] == 2
    assert any("exceeds the context of 128" in e for e in record["errors"])


@pytest.mark.skipif(find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_one_line_with_the_install_hint(db: Path) -> None:
    proc = cli(*RUN, "--limit", "1", db=db)
    assert_one_line_error(proc, "backend 'vllm' needs vllm", "pip install 'joulescore[vllm]'")


def test_model_vllm_cannot_load_is_one_line(db: Path) -> None:
    proc = run_vllm(db, "--limit", "1", "--model", "missing/model")
    assert_one_line_error(proc, "vllm cannot load missing/model", "not a valid model identifier")


@pytest.mark.parametrize(("args", "fragment"), [
    (("--backend", "transformers", "--max-num-seqs", "4"), "backend transformers does not take --max-num-seqs"),
    (("--backend", "vllm", "--gpu-memory-utilization", "1.5"), "--gpu-memory-utilization"),
    (("--backend", "vllm", "--dtype", "int4"), "unknown dtype 'int4'"),
    (("--backend", "vllm", "--n-batch", "64"), "backend vllm does not take --n-batch"),
])
def test_bad_engine_options_are_one_line(db: Path, cli_case: Cli, args: tuple[str, ...], fragment: str) -> None:
    proc = cli_case("run", *args, "--limit", "1", db=db)
    assert_one_line_error(proc, fragment)


# pieces that need no engine ------------------------------------------------

def test_request_times_new_and_old_names() -> None:
    v1 = SimpleNamespace(arrival_time=1_700_000_000.0, first_token_ts=50.25, last_token_ts=51.0,
                         first_token_latency=0.125)
    assert request_times(v1) == (0.125, 0.75)  # the monotonic pair, never mixed with wall-clock arrival
    v0 = SimpleNamespace(arrival_time=100.0, first_token_time=100.5, finished_time=102.0, last_token_time=101.9)
    assert request_times(v0) == (0.5, 1.5)
    early_v1 = SimpleNamespace(arrival_time=100.0, first_token_time=100.25, last_token_time=101.0)
    assert request_times(early_v1) == (0.25, 0.75)
    assert request_times(None) is None
    assert request_times(SimpleNamespace(arrival_time=100.0, first_token_time=0.0, last_token_time=0.0)) is None
    assert request_times(SimpleNamespace(arrival_time=100.0, first_token_time=99.0, finished_time=101.0)) is None


def test_split_revision() -> None:
    assert split_revision("org/name@v1.0") == ("org/name", "v1.0")
    assert split_revision("org/name") == ("org/name", None)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> None:
    """A real safetensors file: header of name -> dtype, shape, offsets; zero bytes of data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, itemsize) in tensors.items():
        size = itemsize
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def test_weights_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    write_safetensors(folder / "model-00001-of-00002.safetensors", {"a": ("BF16", [4, 8], 2)})
    write_safetensors(folder / "model-00002-of-00002.safetensors", {"b": ("BF16", [8], 2), "c": ("F32", [2, 2], 4)})
    assert count_safetensors(sorted(folder.glob("*.safetensors"))) == (32 + 8 + 4, 64 + 16 + 16)
    facts = weights_summary(str(folder))
    assert facts.parameters == 44 and facts.extra["size_bytes"] == 96 and facts.path == str(folder)


def test_hub_cache_model_is_recorded_with_its_commit(db: Path, tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--name"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snap / "config.json").write_text("{}")
    write_safetensors(snap / "model.safetensors", {"w": ("F16", [10, 10], 2)})
    env = {"PYTHONPATH": str(FAKE), "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = cli(*RUN, "--limit", "1", "--max-new-tokens", "2", "--model", "org/name", db=db, env=env)
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)["model"]
    assert model["parameters"] == 100 and model["extra"]["size_bytes"] == 200 and model["name"] == "org/name"
    assert model["extra"]["commit"] == commit and model["path"] == str(snap)
    proc = cli(*RUN, "--limit", "1", "--max-new-tokens", "2", "--model", "org/absent", db=db, env=env)
    assert proc.returncode == 0, proc.stderr  # the stand-in loads anything: the facts are just unknown
    assert json.loads(proc.stdout)["model"]["parameters"] is None


def test_a_damaged_safetensors_header_is_noted_not_raised(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 10**12))
    facts = weights_summary(str(tmp_path))
    assert facts.parameters is None and "weights not read" in facts.extra["weights_note"]


def test_docs_llama_cpp_python_recipe_is_the_one_tested() -> None:
    """docs/engines.md says its llama-cpp-python recipe is what test_openai_http runs: keep them one command."""
    from tests.backends.test_openai_http import server_command

    doc = (Path(__file__).parents[2] / "docs" / "engines.md").read_text(encoding="utf-8")
    served = next(line for line in doc.splitlines() if "-m llama_cpp.server" in line)
    documented = served.split('--serve "', 1)[1].rstrip('"').split()
    tested = [str(a) for a in server_command(Path("$MODEL"), 8000)]
    assert documented[0] == "python" and documented[1:] == tested[1:]
