"""Hugging Face transformers on CPU or GPU: fp32, bf16, fp16, or dynamic int8 on CPU.

The model is a transformers checkpoint (a local folder or a Hugging Face hub
id), or a GGUF file dequantized by transformers' ``gguf_file=`` loader, so that
it runs the same weights as llama.cpp at a different precision.  Batches
are left-padded and go through ``model.generate`` together (static batching);
a streamer observes each decode step, which gives the exact first-token moment
and the moment the batch stops being full (the steady-state window).
"""

from __future__ import annotations

import time
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from joulescore.backends.base import FirstTokenHook, Generation, SteadyEndHook, SteadyWindow
from joulescore.backends.hf_common import PaddedBatchBackend, encode_batch, load_checkpoint, overflow, resolve, trim
from joulescore.errors import BadInput
from joulescore.hardware import logical_cpus
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo

if TYPE_CHECKING:
    import torch

# Fail at import when the engine is missing, so load_backend names the package to install;
# torch and transformers themselves are imported only when a model is loaded (see hf_common.offline_env).
for _package in ("torch", "transformers"):
    if find_spec(_package) is None:
        raise ModuleNotFoundError(f"No module named {_package!r}", name=_package)

#: --dtype -> torch dtype name (torch is imported only when a model is loaded)
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
QUANTIZATIONS = (None, "none", "int8")


class _StepWatch:
    """Sees every decode step: the first token, each row's end, and when the batch drains.

    A transformers streamer by protocol (``put``/``end``), not a ``BaseStreamer``
    subclass: torch and transformers are imported only when a model is loaded,
    after ``offline_env`` has set the variables they (and tqdm) read at import.
    """

    def __init__(self, rows: int, eos: frozenset[int], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None, on_steady_end: SteadyEndHook | None) -> None:
        self.rows, self.eos, self.config = rows, eos, config
        self.window = SteadyWindow(rows, on_first_token, on_steady_end)
        self.prompt_seen = False
        self.step = 0
        self.first_s: float | None = None
        self.row_end_s: list[float | None] = [None] * rows

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() hands over the prompt first
            self.prompt_seen = True
            return
        now = time.perf_counter()
        self.step += 1
        if self.step == 1:
            self.first_s = now
        made = ended = 0
        for row, tok in enumerate(value.reshape(-1).tolist()):
            if self.row_end_s[row] is not None:
                continue
            is_eos = tok in self.eos and self.step > self.config.min_new_tokens
            made += not is_eos
            if is_eos or self.step >= self.config.max_new_tokens:
                self.row_end_s[row] = now
                ended += 1
        self.window.step(made, self.rows if self.step == 1 else 0, ended)

    def end(self) -> None:
        now = time.perf_counter()
        self.row_end_s = [t if t is not None else now for t in self.row_end_s]


def weight_stats(net: Any, int8: bool) -> tuple[int, int]:
    """(parameters, bytes the weights take as run): int8 keeps one byte per Linear weight."""
    import torch

    linear = {id(m.weight) for m in net.modules() if isinstance(m, torch.nn.Linear)}
    params = list(net.parameters())  # each shared (tied) tensor once
    size = sum(p.numel() * (1 if int8 and id(p) in linear else p.element_size()) for p in params)
    return sum(p.numel() for p in params), int(size)


class TransformersBackend(PaddedBatchBackend):
    name = "transformers"
    batching = "static"

    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096, seed: int = 0,
                 dtype: str | None = None, quantization: str | None = None, device: str | None = None,
                 trust_remote_code: bool = False) -> None:
        # resolve() sets the environment before torch (which imports tqdm) and transformers are first imported
        ckpt = resolve(model, trust_remote_code)
        import torch
        import transformers

        dtype = dtype or "fp32"
        if dtype not in DTYPES:
            raise BadInput(f"transformers: unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        if quantization not in QUANTIZATIONS:
            raise BadInput(f"transformers: unknown quantization {quantization!r}; choose none or int8")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BadInput("transformers: --device cuda asked for, but torch sees no CUDA device")
        int8 = quantization == "int8"
        if int8 and (self.device != "cpu" or dtype != "fp32"):
            raise BadInput("transformers: dynamic int8 quantization runs on CPU from fp32 weights only")
        self.threads = threads or logical_cpus()
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        self.n_ctx, self.seed = n_ctx, seed
        loaded = load_checkpoint(ckpt, getattr(torch, DTYPES[dtype]))
        net = loaded.model
        parameters, size_bytes = weight_stats(net, int8)
        if int8:
            # Linear layers hold nearly all the weights; activations are quantized on the fly.
            net = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = net.to(self.device) if not int8 else net
        self.tokenizer, self.eos, self.pad_id = loaded.tokenizer, loaded.eos_ids, loaded.pad_id
        self._info = ModelInfo(
            name=loaded.name, path=loaded.path, backend=self.name,
            quantization="int8-dynamic" if int8 else dtype,
            parameters=parameters,
            architecture=getattr(net.config, "model_type", None),
            context_length=getattr(net.config, "max_position_embeddings", None),
            extra={"dtype": dtype, "device": self.device, "threads": self.threads, "batching": self.batching,
                   "size_bytes": size_bytes, **ckpt.facts(),
                   "weights": ("GGUF dequantized by transformers" if ckpt.kind == "gguf" else f"{ckpt.kind} checkpoint")
                   + (", Linear layers int8 (dynamic)" if int8 else ""),
                   "chat_template": "tokenizer" if self.tokenizer.chat_template else "plain",
                   "engine_version": f"transformers {transformers.__version__}, torch {torch.__version__}"},
        )

    def info(self) -> ModelInfo:
        return self._info

    def _generate_kwargs(self, config: GenerationConfig) -> dict[str, Any]:
        sample = config.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "min_new_tokens": config.min_new_tokens,
                                  "do_sample": sample, "pad_token_id": self.pad_id,
                                  "eos_token_id": sorted(self.eos)}
        if sample:
            kwargs.update(temperature=config.temperature, top_k=40, top_p=0.95)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        return kwargs

    def generate_batch(self, batch: list[list[dict[str, str]]], config: GenerationConfig,
                       on_first_token: FirstTokenHook | None = None,
                       on_steady_end: SteadyEndHook | None = None) -> list[Generation]:
        import torch

        ids, mask, lengths = encode_batch(self.tokenizer, batch)
        width = ids.shape[1]
        failed = overflow(width, lengths, config.max_new_tokens, self.n_ctx)
        if failed is not None:
            return failed
        watch = _StepWatch(len(batch), self.eos, config, on_first_token, on_steady_end)
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=torch.from_numpy(ids).to(self.device),
                                      attention_mask=torch.from_numpy(mask).to(self.device),
                                      streamer=watch, **self._generate_kwargs(config))
        end = time.perf_counter()
        first = watch.first_s if watch.first_s is not None else end
        results = []
        for row, n_in in enumerate(lengths):
            tokens, finish = trim(out[row, width:].tolist(), self.eos, config.max_new_tokens)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            row_end = watch.row_end_s[row] or end
            results.append(Generation(text, n_in, len(tokens), first - start, max(0.0, row_end - first), finish))
        return results

    def close(self) -> None:
        del self.model
