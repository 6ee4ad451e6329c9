"""Read the few GGUF header keys the floor needs (layers and KV heads), and check a header is whole.

GGUF layout (ggml docs/gguf.md): magic ``GGUF``, uint32 version, uint64 tensor
count, uint64 metadata count, then ``key (uint64 length + UTF-8), uint32 type,
value`` pairs, then per tensor ``name, uint32 n_dims, uint64 dims..., uint32
type, uint64 offset``, little-endian.  Every count and length is bounded by the
bytes left in the file before anything is read or allocated for it: a 31-byte
file claiming a 2**60-byte string is a one-line ``GgufError``, not a MemoryError.
"""

from __future__ import annotations

import mmap
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
#: the fewest bytes an array item of each type can take (a string: its length; an array: type and count)
_MIN_ITEM = {**{t: struct.calcsize(f) for t, f in _SCALARS.items()}, _STRING: 8, _ARRAY: 12}
#: the fewest bytes one metadata entry takes (key length, type, a one-byte value) and one tensor's info
#: (name length, n_dims, type, offset)
_MIN_ENTRY, _MIN_TENSOR = 8 + 4 + 1, 8 + 4 + 4 + 8
#: ggml's GGML_MAX_DIMS
_MAX_DIMS = 4
#: nested arrays deeper than this are refused (no GGUF key nests at all)
_MAX_NESTING = 8


class GgufError(ValueError):
    """A GGUF header that is cut short, or whose counts and lengths do not fit in its file."""


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


class _Header:
    """A cursor over the mapped file that never reads, skips or counts past its end."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data, self.pos, self.size = data, 0, len(data)

    def left(self) -> int:
        return self.size - self.pos

    def read(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if n > self.left():
            raise GgufError(f"header cut short at byte {self.pos} of {self.size}")
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += n
        return value

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise GgufError(f"{what} of {n} bytes at byte {self.pos} runs past the end of the {self.size}-byte file")
        self.pos += n

    def count(self, what: str, min_bytes: int) -> int:
        """A uint64 count of things each at least ``min_bytes`` long, refused when the file cannot hold them."""
        at, n = self.pos, self.read("<Q")
        if n * min_bytes > self.left():
            raise GgufError(f"{what} count {n} at byte {at} is more than the {self.size}-byte file can hold")
        return int(n)

    def string(self) -> str:
        at, n = self.pos, self.read("<Q")
        self.skip(n, "string")
        return bytes(self.data[at + 8:at + 8 + n]).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.read(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string() if keep else self.skip(self.read("<Q"), "string")
        if vtype == _ARRAY and depth < _MAX_NESTING:
            item_type = self.read("<I")
            if item_type not in _MIN_ITEM:
                raise GgufError(f"unknown GGUF value type {item_type} at byte {self.pos - 4}")
            count = self.count("array item", _MIN_ITEM[item_type])
            if item_type in _SCALARS and not keep:
                return self.skip(_MIN_ITEM[item_type] * count, "array")
            items = [self.value(item_type, keep, depth + 1) for _ in range(count)]
            return items if keep else None
        raise GgufError(f"unknown GGUF value type {vtype} at byte {self.pos - 4}" if vtype != _ARRAY
                        else f"arrays nested over {_MAX_NESTING} deep")

    def preamble(self) -> tuple[int, int]:
        """(tensor count, metadata count) after the magic and version, each bounded by the file's size."""
        if bytes(self.data[:4]) != b"GGUF":
            raise GgufError("not a GGUF file")
        self.pos = 4
        version = self.read("<I")
        if version < 2:
            raise GgufError(f"GGUF version {version} not supported")
        return self.count("tensor", _MIN_TENSOR), self.count("metadata entry", _MIN_ENTRY)


def _walk(data: bytes | mmap.mmap, wanted: set[str] | None) -> dict[str, Any]:
    """The wanted keys (``None``: read the whole header, tensor infos too, and return nothing)."""
    h = _Header(data)
    tensors, entries = h.preamble()
    found: dict[str, Any] = {}
    for _ in range(entries):
        key = h.string()
        keep = wanted is not None and key in wanted
        value = h.value(h.read("<I"), keep)
        if keep:
            found[key] = value
            if wanted is not None and len(found) == len(wanted):
                return found
    if wanted is not None:
        return found
    for _ in range(tensors):
        h.skip(h.read("<Q"), "tensor name")
        dims = h.read("<I")
        if dims > _MAX_DIMS:
            raise GgufError(f"a tensor with {dims} dimensions (ggml allows {_MAX_DIMS}) at byte {h.pos - 4}")
        h.skip(8 * dims + 4, "tensor shape")
        offset = h.read("<Q")
        if offset > h.size:
            raise GgufError(f"tensor data offset {offset} is past the end of the {h.size}-byte file")
    return found


def _mapped(path: Path, wanted: set[str] | None) -> dict[str, Any]:
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO would wait for a writer forever
        raise GgufError("not a regular file")
    if st.st_size < 4:
        raise GgufError("not a GGUF file" if st.st_size else "empty file")
    with path.open("rb") as fh:
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _walk(data, wanted)


def read_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    """The wanted keys found in a GGUF file's metadata (missing keys are absent)."""
    return _mapped(path, wanted)


def check_header(path: Path) -> None:
    """Raise :class:`GgufError` unless every count and length in the header fits in the file."""
    _mapped(path, None)


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
    except (OSError, ValueError):
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
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
