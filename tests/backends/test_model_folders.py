"""--model as a transformers model folder or a Hugging Face hub id, through the real CLI.

Nothing downloads: every CLI run has HF_HUB_OFFLINE=1, and the model folders
are built here from what ships offline (the SmolLM2 GGUF, the MiniLM folder,
a tiny random-weight Llama).  Hub ids are read from a hub cache laid out on
disk the way huggingface_hub writes it (blobs, snapshots/<commit>, refs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import ENGINE_FAST, Cli, assert_one_line_error, cli, cli_in_process, copy_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported by a fixture: this process never downloads
os.environ.setdefault("TQDM_DISABLE", "1")

FAST = ENGINE_FAST
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-folders")


@pytest.fixture(scope="session")
def env(work: Path) -> dict[str, str]:
    """What every CLI run here gets: offline, a hub cache and export cache of its own."""
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(work / "hub"), "HF_HOME": str(work / "hf-home"),
            "JOULESCORE_CACHE_DIR": str(work / "joulescore-cache")}


@pytest.fixture(scope="session")
def tiny_llama(work: Path, smol_tokenizer: Path) -> Path:
    """A random-weight Llama (hidden 32, 2 layers) over SmolLM2's vocabulary: the fastest real model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    target = work / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(target)
    copy_tokenizer(smol_tokenizer, target)
    return target


@pytest.fixture(scope="session")
def minilm() -> Path:
    from joulescore.backends.models import resolve_encoder

    return resolve_encoder("minilm-l6").path


def lay_out_hub(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """``folder`` as huggingface_hub caches a snapshot: content-named blobs, links under snapshots/<commit>, refs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def _run(db: Path, env: dict[str, str], *args: str, run: Cli = cli) -> dict:
    proc = run("run", *FAST, *args, db=db, env=env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete" and record["counts"]["succeeded"] == 2
    return record


def _texts(db: Path, run_id: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT text FROM results WHERE run_id=? ORDER BY prompt_index", (run_id,))]


def _bad_folder(root: Path, name: str, config: str | None, weights: bool = True, **extra: str) -> Path:
    folder = root / name
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(config)
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0" * 16)  # never read: the check before loading refuses
    for file, text in extra.items():
        (folder / file).write_text(text)
    return folder


LLAMA = json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
REMOTE = json.dumps({"model_type": "acme", "auto_map": {"AutoConfig": "configuration_acme.AcmeConfig"}})


def test_bad_model_folders_are_one_line_errors(tmp_path: Path, db: Path, env: dict[str, str]) -> None:
    no_weights = _bad_folder(tmp_path, "no-weights", LLAMA, weights=False)
    corrupt = _bad_folder(tmp_path, "corrupt", '{"model_type": "llama",')
    remote = _bad_folder(tmp_path, "remote", REMOTE)
    remote_tokenizer = _bad_folder(tmp_path, "remote-tok", LLAMA, **{"tokenizer_config.json": json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_acme.AcmeTokenizer", None]}})})
    for backend in ("transformers", "onnxruntime", "encoder"):
        task = ("--task", "sentence-similarity") if backend == "encoder" else ()
        args = ("run", *FAST, *task, "--backend", backend, "--model")
        # each refusal once as a user meets it (a subprocess), then on the other engines in process
        run = cli if backend == "transformers" else cli_in_process
        assert_one_line_error(run(*args, str(no_weights), db=db, env=env), "no weights", str(no_weights))
        assert_one_line_error(run(*args, str(corrupt), db=db, env=env), "corrupt config.json", str(corrupt))
        assert_one_line_error(run(*args, str(remote), db=db, env=env), "auto_map in config.json",
                              "--trust-remote-code")
        assert_one_line_error(run(*args, str(remote_tokenizer), db=db, env=env), "tokenizer_config.json",
                              "--trust-remote-code")
        assert_one_line_error(run(*args, str(tmp_path / "absent"), db=db, env=env), "not found",
                              str(tmp_path / "absent"))
    # a model type transformers does not know is a custom architecture: it needs the model's own code
    custom = _bad_folder(tmp_path, "custom", json.dumps({"model_type": "acme-net", "architectures": ["AcmeNet"]}))
    assert_one_line_error(cli("run", *FAST, "--backend", "transformers", "--model", str(custom), db=db, env=env),
                          "'acme-net'", "--trust-remote-code")
    # llama.cpp still takes GGUF files only, and says where a folder runs
    assert_one_line_error(cli("run", *FAST, "--model", str(no_weights), db=db, env=env), "--backend transformers")


def test_hub_ids_missing_offline_say_how_to_fetch_them(tmp_path: Path, db: Path, env: dict[str, str],
                                                       minilm: Path) -> None:
    hub_env = {**env, "HF_HUB_CACHE": str(tmp_path / "hub")}
    args = ("run", *FAST, "--backend", "transformers", "--model")
    assert_one_line_error(cli(*args, "acme/absent", db=db, env=hub_env), "not in the Hugging Face cache",
                          "HF_HUB_OFFLINE=1", "`hf download acme/absent`")
    assert_one_line_error(cli(*args, "acme/absent@v2", db=db, env=hub_env), "`hf download acme/absent --revision v2`")
    # cached config without its weights (a partial snapshot): also refused offline, with the same hint
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(minilm / "config.json", partial / "config.json")
    lay_out_hub(tmp_path / "hub", "acme/partial", partial, COMMIT)
    assert_one_line_error(cli("run", *FAST, "--task", "sentence-similarity", "--backend", "encoder", "--model",
                              "acme/partial", db=db, env=hub_env), "without its weights", "`hf download acme/partial`")
    # a hub snapshot whose config needs remote code is refused like a folder
    lay_out_hub(tmp_path / "hub", "acme/remote", _bad_folder(tmp_path, "remote", REMOTE), COMMIT)
    assert_one_line_error(cli(*args, "acme/remote", db=db, env=hub_env), "--trust-remote-code")


def test_weight_files_follow_a_sharded_index(tmp_path: Path) -> None:
    from joulescore.backends.models import ModelError, resolve_checkpoint

    folder = _bad_folder(tmp_path, "sharded", LLAMA, weights=False)
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": shards[0], "b": shards[1], "c": shards[1]}}))
    (folder / shards[0]).write_bytes(b"\0" * 100)
    with pytest.raises(ModelError, match="lacks weight file model-00002-of-00002.safetensors"):
        resolve_checkpoint(str(folder))
    (folder / shards[1]).write_bytes(b"\0" * 28)
    (folder / "consolidated.safetensors").write_bytes(b"\0" * 1000)  # not listed: transformers does not load it
    ckpt = resolve_checkpoint(str(folder))
    assert [f.name for f in ckpt.weight_files()] == shards
    assert ckpt.facts() == {**ckpt.facts(), "source": "folder", "weights_file_bytes": 128,
                            "weights_format": "safetensors"}


def test_onnx_export_key_follows_the_files_and_the_commit(tmp_path: Path, tiny_llama: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from joulescore.backends.models import Checkpoint, resolve_checkpoint
    from joulescore.backends.onnx import export_key

    monkeypatch.setenv("JOULESCORE_CACHE_DIR", str(tmp_path / "cache"))
    copy = shutil.copytree(tiny_llama, tmp_path / "elsewhere")
    key = export_key(resolve_checkpoint(str(tiny_llama)))
    assert export_key(resolve_checkpoint(str(copy))) == key  # same files, another place: the same export
    (copy / "generation_config.json").write_text("{}")  # not part of the graph
    assert export_key(resolve_checkpoint(str(copy))) == key
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert export_key(resolve_checkpoint(str(copy))) != key
    hub = Checkpoint("acme/x", tiny_llama, "hub", repo_id="acme/x", revision="main", commit=COMMIT)
    assert export_key(hub) != export_key(Checkpoint("acme/x", tiny_llama, "hub", repo_id="acme/x",
                                                    revision="main", commit=OTHER_COMMIT))
    # a GGUF file is keyed by its place, size and time (the engine tests export a model folder, not a GGUF)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    gguf_key = export_key(Checkpoint("model", gguf, "gguf"))
    assert gguf_key == export_key(Checkpoint("model", gguf, "gguf")) and gguf_key not in (key, export_key(hub))
    os.utime(gguf, ns=(gguf.stat().st_atime_ns, gguf.stat().st_mtime_ns + 10**9))
    assert export_key(Checkpoint("model", gguf, "gguf")) != gguf_key


@pytest.mark.slow
def test_a_model_folder_runs_on_transformers_and_onnxruntime(db: Path, env: dict[str, str],
                                                              tiny_llama: Path) -> None:
    record = _run(db, env, "--backend", "transformers", "--model", str(tiny_llama))
    model = record["model"]
    assert model["path"] == str(tiny_llama) and model["name"] == "tiny-llama" and model["architecture"] == "llama"
    params = model["parameters"]
    assert params == 49152 * 32 + 2 * (4 * 32 * 32 // 2 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32) + 32  # tied lm_head
    extra = model["extra"]
    assert extra["dtype"] == "fp32" and extra["size_bytes"] == 4 * params and extra["source"] == "folder"
    assert extra["weights_file_bytes"] == (tiny_llama / "model.safetensors").stat().st_size
    assert extra["weights_format"] == "safetensors" and extra["trust_remote_code"] is False
    assert record["counts"]["output_tokens"] == 6
    # in this process: a folder needs nothing from the environment's hub settings, and torch is loaded here
    onnx = _run(db, env, "--backend", "onnxruntime", "--model", str(tiny_llama), run=cli_in_process)
    assert onnx["model"]["path"] == str(tiny_llama) and onnx["model"]["parameters"] == params
    assert onnx["model"]["extra"]["export"] == "exported for this run"
    assert onnx["model"]["extra"]["size_bytes"] == Path(onnx["model"]["extra"]["onnx_file"]).stat().st_size
    # greedy decoding of the same fp32 weights: the same answers from both engines
    assert _texts(db, onnx["run_id"]) == _texts(db, record["run_id"])


@pytest.mark.slow
def test_a_hub_cache_model_runs_on_transformers_and_onnxruntime(db: Path, env: dict[str, str],
                                                                 tiny_llama: Path) -> None:
    snapshot = lay_out_hub(Path(env["HF_HUB_CACHE"]), "acme/tiny-llama", tiny_llama, COMMIT, refs=("main", "v1"))
    record = _run(db, env, "--backend", "transformers", "--model", "acme/tiny-llama")
    model = record["model"]
    assert model["name"] == "acme/tiny-llama" and model["path"] == str(snapshot)
    assert model["extra"] == {**model["extra"], "source": "hub", "hub_repo": "acme/tiny-llama",
                              "hub_revision": "main", "hub_commit": COMMIT, "size_bytes": 4 * model["parameters"],
                              "weights_file_bytes": (tiny_llama / "model.safetensors").stat().st_size}
    onnx = _run(db, env, "--backend", "onnxruntime", "--model", "acme/tiny-llama@v1")
    assert onnx["model"]["extra"] == {**onnx["model"]["extra"], "hub_revision": "v1", "hub_commit": COMMIT,
                                      "source": "hub"}
    assert onnx["model"]["parameters"] == model["parameters"]
    assert _texts(db, onnx["run_id"]) == _texts(db, record["run_id"])


@pytest.mark.slow
def test_encoder_takes_a_minilm_folder_and_hub_id(tmp_path: Path, db: Path, env: dict[str, str],
                                                  minilm: Path) -> None:
    folder = shutil.copytree(minilm, tmp_path / "all-MiniLM-L6-v2")
    snapshot = lay_out_hub(Path(env["HF_HUB_CACHE"]), "sentence-transformers/all-MiniLM-L6-v2", minilm, OTHER_COMMIT)
    task = ("--task", "sentence-similarity", "--backend", "encoder", "--model")
    local = _run(db, env, *task, str(folder))
    hub = _run(db, env, *task, f"sentence-transformers/all-MiniLM-L6-v2@{OTHER_COMMIT}")
    assert local["model"]["path"] == str(folder) and hub["model"]["path"] == str(snapshot)
    assert hub["model"]["extra"]["hub_commit"] == OTHER_COMMIT and hub["model"]["extra"]["hub_revision"] == OTHER_COMMIT
    for record in (local, hub):
        assert record["model"]["parameters"] == 22_713_216 and record["model"]["extra"]["size_bytes"] == 4 * 22_713_216
        assert record["model"]["extra"]["dtype"] == "fp32"
        assert record["model"]["context_length"] == 256  # sentence-transformers' own limit, read from the snapshot too
    assert _texts(db, hub["run_id"]) == _texts(db, local["run_id"])


@pytest.mark.slow
def test_the_smollm2_folder_answers_like_its_gguf(db: Path, env: dict[str, str], smollm2_folder: Path,
                                                  smollm2_transformers_run: tuple[dict, list[str]]) -> None:
    # in this process, where the folder was built (its import of torch and transformers already paid)
    folder = _run(db, env, "--backend", "transformers", "--model", str(smollm2_folder), run=cli_in_process)
    assert folder["model"]["parameters"] == 134_515_008 and folder["model"]["architecture"] == "llama"
    assert folder["model"]["extra"]["size_bytes"] == 4 * 134_515_008 and folder["model"]["extra"]["source"] == "folder"
    gguf, gguf_texts = smollm2_transformers_run  # run --backend transformers --model smollm2-135m (fp32, the default)
    assert gguf["model"]["extra"]["source"] == "gguf" and gguf["model"]["parameters"] == 134_515_008
    assert _texts(db, folder["run_id"]) == gguf_texts


ACME_CODE = '''
from transformers import LlamaConfig, LlamaForCausalLM


class AcmeConfig(LlamaConfig):
    model_type = "acme-llama"


class AcmeForCausalLM(LlamaForCausalLM):
    config_class = AcmeConfig
'''


@pytest.mark.slow
def test_trust_remote_code_runs_the_models_own_code(tmp_path: Path, db: Path, env: dict[str, str],
                                                     tiny_llama: Path) -> None:
    folder = shutil.copytree(tiny_llama, tmp_path / "acme")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="acme-llama", architectures=["AcmeForCausalLM"],
                  auto_map={"AutoConfig": "modeling_acme.AcmeConfig",
                            "AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_acme.py").write_text(ACME_CODE)
    assert_one_line_error(cli("run", *FAST, "--backend", "transformers", "--model", str(folder), db=db, env=env),
                          "--trust-remote-code")
    record = _run(db, env, "--backend", "transformers", "--model", str(folder), "--trust-remote-code")
    assert record["model"]["architecture"] == "acme-llama" and record["model"]["extra"]["trust_remote_code"] is True
