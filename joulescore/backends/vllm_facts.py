"""What the vLLM engine reads without vLLM: request timings, hub revisions, weight sizes.

Kept apart from the engine so these are tested on their own (vLLM never runs here):
``RequestOutput.metrics`` has changed names across vLLM releases, and the record's
parameter count and weight bytes come from the checkpoint's files, not from vLLM.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: a safetensors header larger than this is not believed (the format caps it at 100 MB)
MAX_HEADER_BYTES = 100_000_000


def _positive(metrics: Any, name: str) -> float | None:
    value = getattr(metrics, name, None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def request_times(metrics: Any) -> tuple[float, float] | None:
    """(time to first token, first token to finish) in seconds from vLLM's per-request metrics.

    Newer vLLM (V1 ``RequestStateStats``) gives ``first_token_latency`` and engine-core
    monotonic ``first_token_ts`` / ``last_token_ts``; older releases (``RequestMetrics``,
    early V1) give wall-clock ``arrival_time``, ``first_token_time`` and ``finished_time``
    or ``last_token_time``.  Only differences on one clock are taken.  None when the
    metrics are absent (stats off) or do not hold a first token.
    """
    if metrics is None:
        return None
    first_ts, last_ts = _positive(metrics, "first_token_ts"), _positive(metrics, "last_token_ts")
    latency = _positive(metrics, "first_token_latency")
    if first_ts is not None and last_ts is not None and latency is not None and last_ts >= first_ts:
        return latency, last_ts - first_ts
    arrival, first = _positive(metrics, "arrival_time"), _positive(metrics, "first_token_time")
    end = _positive(metrics, "finished_time") or _positive(metrics, "last_token_time")
    if arrival is not None and first is not None and end is not None and arrival <= first <= end:
        return first - arrival, end - first
    return None


def split_revision(model: str) -> tuple[str, str | None]:
    """``org/name@revision`` -> (``org/name``, ``revision``); no ``@``: no revision."""
    name, sep, revision = model.partition("@")
    return (name, revision or None) if sep else (model, None)


@dataclass
class WeightFacts:
    """The checkpoint as recorded: where it is, its commit, parameters and weight bytes where known."""

    name: str | None = None
    path: str | None = None
    parameters: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path.name}: too short for a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: safetensors header of {size} bytes")
        header = json.loads(fh.read(size))
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: safetensors header is not an object")
    return header


def count_safetensors(files: list[Path]) -> tuple[int, int]:
    """(parameters, weight bytes) summed over the tensors of safetensors files."""
    params = size = 0
    for path in files:
        for name, tensor in safetensors_header(path).items():
            if name == "__metadata__" or not isinstance(tensor, dict):
                continue
            params += math.prod(int(d) for d in tensor.get("shape", []))
            begin, end = tensor.get("data_offsets", (0, 0))
            size += int(end) - int(begin)
    return params, size


def _hub_folder(repo_id: str, revision: str | None) -> Path | None:
    """The hub cache's snapshot of a model vLLM loaded (never downloads)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not in the cache, or not a hub id: facts stay unknown
        return None


def weights_summary(source: str, revision: str | None = None) -> WeightFacts:
    """Parameters and weight bytes of what vLLM loaded: a folder, a hub id in the cache, or one file."""
    path = Path(source)
    folder = path if path.is_dir() else None
    facts = WeightFacts()
    if path.is_file():  # a GGUF file: its size, parameters unknown without reading its tensors
        return WeightFacts(path.stem, str(path), None, {"size_bytes": path.stat().st_size, "weights": "gguf"})
    if folder is None:
        folder = _hub_folder(source, revision)
        facts.name = source
        facts.extra["hub_id"] = source
        if revision is not None:
            facts.extra["revision"] = revision
    if folder is None:
        return facts
    facts.name = facts.name or folder.name
    facts.path = str(folder)
    if folder.parent.name == "snapshots":  # the hub cache's layout: snapshots/<commit>
        facts.extra["commit"] = folder.name
    shards = sorted(folder.glob("*.safetensors"))
    try:
        if shards:
            facts.parameters, size = count_safetensors(shards)
            facts.extra.update(size_bytes=size, weights="safetensors")
        elif bins := sorted(folder.glob("*.bin")):
            facts.extra.update(size_bytes=sum(b.stat().st_size for b in bins), weights="pytorch .bin")
    except (OSError, ValueError) as exc:
        facts.extra["weights_note"] = f"weights not read: {exc}"
    return facts
