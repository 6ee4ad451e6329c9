"""ONNX Runtime: the model exported to ONNX with its KV cache, optionally int8, on the best provider here.

The export (``torch.onnx``, TorchScript path) takes the past keys and values as
inputs and returns the present ones, so each decode step feeds one new token
per row and decoding stays linear, not quadratic.  The model is a GGUF file, a
transformers model folder or a hub id (see ``hf_common``).  Exports are cached
under ``$JOULESCORE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/joulescore``), keyed
by the weights (a GGUF file's path and stat, a folder's files' sha256, a hub
snapshot's commit) and every setting that changes the graph; int8 comes from
onnxruntime's ``quantize_dynamic`` on the cached fp32 export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from joulescore.backends.base import FirstTokenHook, Generation, SteadyEndHook, SteadyWindow
from joulescore.backends.hf_common import (
    Loaded,
    PaddedBatchBackend,
    encode_batch,
    load_checkpoint,
    one_line,
    overflow,
    resolve,
    trim,
)
from joulescore.backends.models import Checkpoint
from joulescore.errors import BadInput, ModelError
from joulescore.hardware import logical_cpus
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo

EXPORT_VERSION = 1  # bump when the exported graph's inputs or outputs change
OPSET = 17
QUANTIZATIONS = (None, "none", "int8")


def cache_dir() -> Path:
    """Where exports live: ``$JOULESCORE_CACHE_DIR``, else the XDG cache directory."""
    env = os.environ.get("JOULESCORE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "joulescore"


def file_sha256(path: Path) -> str:
    """A file's sha256, remembered in the cache by its path, size and mtime (weights run to gigabytes)."""
    stat = path.stat()
    stamp = repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns)).encode()
    memo = cache_dir() / "onnx" / "sha256" / hashlib.sha256(stamp).hexdigest()[:32]
    if memo.is_file():
        return memo.read_text(encoding="ascii").strip()
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    digest = sha.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    tmp.write_text(digest, encoding="ascii")
    os.replace(tmp, memo)
    return digest


def export_key(ckpt: Checkpoint) -> str:
    """A key that changes whenever the weights, the exporter or the graph would."""
    import torch
    import transformers

    ident: tuple[object, ...]
    if ckpt.kind == "hub":  # a commit names every file of the snapshot
        ident = ("hub", ckpt.repo_id, ckpt.commit)
    elif ckpt.kind == "folder":
        files = [ckpt.path / "config.json", *ckpt.weight_files()]
        ident = ("folder", *((f.name, file_sha256(f)) for f in files))
    else:
        stat = ckpt.path.stat()
        ident = (str(ckpt.path.resolve()), stat.st_size, stat.st_mtime_ns)
    parts = (*ident, torch.__version__, transformers.__version__, OPSET, EXPORT_VERSION)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _layer_kv(cache: Any, layer: int) -> tuple[Any, Any]:
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def _export(loaded: Loaded, target: Path) -> None:
    """Trace the model with past keys/values in and present ones out, into ``target``."""
    import torch
    from transformers.cache_utils import DynamicCache

    cfg = loaded.config
    layers = cfg.num_hidden_layers
    heads = cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    class WithCache(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> tuple[Any, ...]:
            cache = DynamicCache()
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=cache, use_cache=True)
            flat: list[Any] = []
            for i in range(layers):
                flat.extend(_layer_kv(out.past_key_values, i))
            return (out.logits, *flat)

    rows, new, old = 2, 3, 4  # any sizes > 1, so the tracer keeps every axis general
    past = [torch.zeros(rows, heads, old, head_dim) for _ in range(2 * layers)]
    ids = torch.ones(rows, new, dtype=torch.long)
    mask = torch.ones(rows, old + new, dtype=torch.long)
    pos = torch.arange(old, old + new).unsqueeze(0).expand(rows, new)
    kv_in = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    kv_out = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "new"}, "position_ids": {0: "batch", 1: "new"},
                                       "attention_mask": {0: "batch", 1: "total"}, "logits": {0: "batch", 1: "new"}}
    axes.update({n: {0: "batch", 2: "past"} for n in kv_in})
    axes.update({n: {0: "batch", 2: "total"} for n in kv_out})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants and Python branches, expected here
        torch.onnx.export(WithCache(loaded.model), (ids, mask, pos, *past), str(target),
                          input_names=["input_ids", "attention_mask", "position_ids", *kv_in],
                          output_names=["logits", *kv_out], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def ensure_export(loaded: Loaded, int8: bool, folder: Path) -> tuple[Path, bool]:
    """The cached ONNX file for these settings in ``folder``, exporting it first if needed; (path, was cached)."""
    fp32 = folder / "model.onnx"
    target = folder / ("model.int8.onnx" if int8 else "model.onnx")
    if target.exists():
        return target, True
    folder.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        tmp = folder / f".export-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _export(loaded, tmp / "model.onnx")
        except (RuntimeError, ValueError, TypeError, AttributeError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelError(f"onnxruntime: cannot export {loaded.name} to ONNX: {one_line(exc)}") from None
        parameters = sum(p.numel() for p in loaded.model.parameters())
        (tmp / "meta.json").write_text(json.dumps({"parameters": parameters}), encoding="utf-8")
        # a model over 2 GB is written with its weights in files beside model.onnx: move those first, then
        # model.onnx, atomically, so a half-written export is never used
        for item in sorted(tmp.iterdir(), key=lambda f: f.name == "model.onnx"):
            os.replace(item, folder / item.name)
        shutil.rmtree(tmp, ignore_errors=True)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp_file = folder / f".int8-{os.getpid()}.onnx"
        quantize_dynamic(str(fp32), str(tmp_file), weight_type=QuantType.QInt8)
        os.replace(tmp_file, target)
    return target, False


def _meta(folder: Path) -> dict[str, Any]:
    """What the export noted about its model (the parameter count); empty for exports older than the note."""
    try:
        data = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _export_bytes(folder: Path, int8: bool) -> int:
    """The bytes of the weights as run: the int8 file, or the fp32 export with any external weight files."""
    if int8:
        return (folder / "model.int8.onnx").stat().st_size
    return sum(f.stat().st_size for f in folder.iterdir()
               if f.is_file() and not f.name.startswith(".") and f.name not in ("model.int8.onnx", "meta.json"))


class OnnxBackend(PaddedBatchBackend):
    name = "onnxruntime"
    batching = "static"

    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096, seed: int = 0,
                 quantization: str | None = None, device: str | None = None, dtype: str | None = None,
                 trust_remote_code: bool = False) -> None:
        if quantization not in QUANTIZATIONS:
            raise BadInput(f"onnxruntime: unknown quantization {quantization!r}; choose none or int8")
        if dtype not in (None, "fp32"):
            raise BadInput(f"onnxruntime: the export is fp32 (int8 with --quantization int8), not {dtype}")
        available = ort.get_available_providers()
        if device == "cpu" or "CUDAExecutionProvider" not in available:
            if device not in (None, "cpu"):
                raise BadInput(f"onnxruntime: no provider for device {device!r} here ({', '.join(available)})")
            self.providers = ["CPUExecutionProvider"]
        else:
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.threads = threads or logical_cpus()
        self.n_ctx, self.seed = n_ctx, seed
        int8 = quantization == "int8"
        ckpt = resolve(model, trust_remote_code)  # sets the environment before transformers is first imported
        folder = cache_dir() / "onnx" / export_key(ckpt)
        cached = (folder / ("model.int8.onnx" if int8 else "model.onnx")).exists()
        fp32_cached = (folder / "model.onnx").exists()
        loaded = load_checkpoint(ckpt, weights=not fp32_cached)  # weights only to export
        onnx_path, _ = ensure_export(loaded, int8, folder)
        cfg = loaded.config
        self.layers, self.kv_heads = cfg.num_hidden_layers, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.tokenizer, self.eos, self.pad_id = loaded.tokenizer, loaded.eos_ids, loaded.pad_id
        loaded.model = None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=self.providers)
        self._info = ModelInfo(
            name=loaded.name, path=loaded.path, backend=self.name, quantization="int8-dynamic" if int8 else "fp32",
            parameters=_meta(folder).get("parameters"), architecture=getattr(cfg, "model_type", None),
            context_length=getattr(cfg, "max_position_embeddings", None),
            extra={"onnx_file": str(onnx_path), "export": "cached" if cached else "exported for this run",
                   "size_bytes": _export_bytes(folder, int8), "dtype": "int8" if int8 else "fp32", **ckpt.facts(),
                   "providers": self.session.get_providers(), "threads": self.threads, "batching": self.batching,
                   "kv_cache": True, "engine_version": f"onnxruntime {ort.__version__}"},
        )

    def info(self) -> ModelInfo:
        return self._info

    def _empty_past(self, rows: int) -> dict[str, np.ndarray]:
        shape = (rows, self.kv_heads, 0, self.head_dim)
        return {f"past.{i}.{kv}": np.zeros(shape, np.float32) for i in range(self.layers) for kv in ("key", "value")}

    def generate_batch(self, batch: list[list[dict[str, str]]], config: GenerationConfig,
                       on_first_token: FirstTokenHook | None = None,
                       on_steady_end: SteadyEndHook | None = None) -> list[Generation]:
        ids, mask, lengths = encode_batch(self.tokenizer, batch)
        rows, width = ids.shape
        failed = overflow(width, lengths, config.max_new_tokens, self.n_ctx)
        if failed is not None:
            return failed
        rng = np.random.default_rng(config.seed)
        banned = np.fromiter(self.eos, dtype=np.int64)
        pos = np.clip(mask.cumsum(axis=1) - 1, 0, None)
        feed: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
                                       **self._empty_past(rows)}
        tokens: list[list[int]] = [[] for _ in range(rows)]
        row_end: list[float | None] = [None] * rows
        window = SteadyWindow(rows, on_first_token, on_steady_end)
        start = time.perf_counter()
        first = start
        for step in range(1, config.max_new_tokens + 1):
            out = self.session.run(None, feed)
            logits = out[0][:, -1, :]
            if step <= config.min_new_tokens:
                logits[:, banned] = -np.inf
            nxt = self._pick(logits, config.temperature, rng)
            now = time.perf_counter()
            if step == 1:
                first = now
            made = ended = 0
            for r in range(rows):
                if row_end[r] is not None:
                    continue
                tok = int(nxt[r])
                tokens[r].append(tok)
                is_eos = tok in self.eos
                made += not is_eos
                if is_eos or step == config.max_new_tokens:
                    row_end[r] = now
                    ended += 1
            window.step(made, rows if step == 1 else 0, ended)
            if all(t is not None for t in row_end):
                break
            mask = np.concatenate([mask, np.ones((rows, 1), np.int64)], axis=1)
            feed = {"input_ids": nxt[:, None].astype(np.int64), "attention_mask": mask,
                    "position_ids": feed["position_ids"][:, -1:] + 1}
            feed.update({f"past.{i // 2}.{('key', 'value')[i % 2]}": kv for i, kv in enumerate(out[1:])})
        end = time.perf_counter()
        results = []
        for r, n_in in enumerate(lengths):
            kept, finish = trim(tokens[r], self.eos, config.max_new_tokens)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            results.append(Generation(text, n_in, len(kept), first - start, max(0.0, (row_end[r] or end) - first),
                                      finish))
        return results

    @staticmethod
    def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
        """Greedy at temperature 0; otherwise top-40 sampling at the temperature."""
        if temperature <= 0:
            return logits.argmax(axis=-1)
        top = np.argpartition(-logits, 40, axis=-1)[:, :40]
        picked = np.take_along_axis(logits, top, axis=-1) / temperature
        probs = np.exp(picked - picked.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        return np.array([top[r, rng.choice(40, p=probs[r])] for r in range(len(top))])

    def close(self) -> None:
        del self.session
