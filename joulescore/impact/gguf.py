"""Read the few GGUF header keys the floor needs (layers and KV heads), nothing else.

GGUF layout (ggml docs/gguf.md): magic ``GGUF``, uint32 version, uint64 tensor
count, uint64 metadata count, then ``key (uint64 length + UTF-8), uint32 type,
value`` pairs, little-endian.  We stop as soon as the keys we want are read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class KvShape:
    """What one token of context costs in the KV cache."""

    layers: int
    kv_heads: int
    head_dim: int
    bytes_per_value: float = 2.0  # llama.cpp's default cache type is f16

    @property
    def bytes_per_token(self) -> float:
        """K and V, every layer: 2 x layers x kv_heads x head_dim x bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_value


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(fh: BinaryIO) -> str:
    return fh.read(_read(fh, "<Q")).decode("utf-8", errors="replace")


def _value(fh: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _read(fh, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(fh)
    if vtype == _ARRAY:
        item_type, count = _read(fh, "<I"), _read(fh, "<Q")
        if item_type in _SCALARS and not keep:
            fh.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
            return None
        items = [_value(fh, item_type, keep) for _ in range(count)]
        return items if keep else None
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    """The wanted keys found in a GGUF file's metadata (missing keys are absent)."""
    found: dict[str, Any] = {}
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        version = _read(fh, "<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} not supported")
        _read(fh, "<Q")
        count = _read(fh, "<Q")
        for _ in range(count):
            key = _string(fh)
            vtype = _read(fh, "<I")
            value = _value(fh, vtype, key in wanted)
            if key in wanted:
                found[key] = value
                if len(found) == len(wanted):
                    break
    return found


def kv_shape(path: str | Path | None, architecture: str | None) -> KvShape | None:
    """The model's KV-cache shape from its GGUF header, or None if it cannot be read."""
    if not path or not architecture:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    a = architecture
    keys = {f"{a}.block_count", f"{a}.attention.head_count", f"{a}.attention.head_count_kv",
            f"{a}.embedding_length", f"{a}.attention.key_length"}
    try:
        meta = read_metadata(p, keys)
    except (OSError, ValueError, struct.error):
        return None
    layers, heads = meta.get(f"{a}.block_count"), meta.get(f"{a}.attention.head_count")
    if not layers or not heads:
        return None
    kv_heads = meta.get(f"{a}.attention.head_count_kv") or heads
    head_dim = meta.get(f"{a}.attention.key_length")
    if not head_dim:
        width = meta.get(f"{a}.embedding_length")
        if not width:
            return None
        head_dim = width // heads
    return KvShape(int(layers), int(kv_heads), int(head_dim))


def context_length(path: str | Path) -> int | None:
    """The context the model was trained for (``{arch}.context_length``), or None if it cannot be read.

    Read from the header before llama.cpp loads the file, so a window that cannot hold the run's
    tokens is refused before llama.cpp warns about it on stderr.
    """
    p = Path(path)
    try:
        arch = read_metadata(p, {"general.architecture"}).get("general.architecture")
        if not isinstance(arch, str):
            return None
        value = read_metadata(p, {f"{arch}.context_length"}).get(f"{arch}.context_length")
    except (OSError, ValueError, struct.error):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
