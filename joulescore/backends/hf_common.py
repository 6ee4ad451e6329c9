"""What the transformers and ONNX Runtime engines share: loading, chat template, left padding.

A model is a GGUF file (dequantized by transformers' ``gguf_file=`` loader, so
it answers with the same weights and tokenizer as llama.cpp starts from), a
local model folder, or a Hugging Face hub id.  Local models never touch the
network; a hub id is read from the hub cache and fetched through
``huggingface_hub`` only when missing and ``HF_HUB_OFFLINE`` is not set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from joulescore.backends.base import Backend, FirstTokenHook, Generation, context_overflow
from joulescore.backends.models import REMOTE_CODE_FLAG, Checkpoint, check_weights, hub_id, resolve_checkpoint
from joulescore.errors import ModelError
from joulescore.model.generation import GenerationConfig

#: set (unless the user already set them) when a local model is loaded, never at import
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TQDM_DISABLE": "1",  # the GGUF dequantizer draws a bar on stderr otherwise
}


def offline_env(model: str | None = None) -> None:
    """Never fetch from a hub, and draw no progress bars: called by each engine before it loads a model.

    huggingface_hub, transformers and tqdm read these variables when they are
    first imported, so engines call this before importing them.  A hub id
    (``model``) leaves them alone: the user's own ``HF_HUB_OFFLINE`` decides
    whether a model missing from the cache may be fetched, with its progress bar.
    """
    if model is not None and hub_id(model) is not None:
        return
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def quiet_transformers() -> None:
    """No progress bars or warnings from transformers on stderr: the CLI's errors are one line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def one_line(exc: BaseException) -> str:
    """An exception's message as one line (transformers' messages run to paragraphs)."""
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(exc).__name__


def load_errors() -> tuple[type[BaseException], ...]:
    """What transformers' loaders raise on a checkpoint that is not what it claims (each becomes one line).

    Beyond the usual ValueError/OSError: a ``pytorch_model.bin`` that is not a pickle (UnpicklingError,
    EOFError), a header field that does not unpack (struct.error), a safetensors file that is not one.
    """
    import pickle
    import struct

    errors: list[type[BaseException]] = [ValueError, OSError, KeyError, RuntimeError, ImportError, TypeError,
                                         pickle.UnpicklingError, EOFError, struct.error]
    try:
        from safetensors import SafetensorError
    except ImportError:
        pass
    else:
        errors.append(SafetensorError)
    return tuple(errors)


def check_architecture(ckpt: Checkpoint) -> None:
    """A model type this transformers does not know would need the model's own code: refuse it, naming the flag."""
    if ckpt.kind == "gguf" or ckpt.trust_remote_code:
        return
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = ckpt.config.get("model_type")
    if not model_type:
        raise ModelError(f"config.json of {ckpt.name} names no model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ModelError(f"model type {model_type!r} of {ckpt.name} is not built into transformers "
                         f"{transformers.__version__}: it needs its own code ({REMOTE_CODE_FLAG}) or a newer transformers")


def check_checkpoint(ckpt: Checkpoint) -> None:
    """Before transformers loads it: an architecture it knows (or trusted code), and weight files that are whole."""
    check_architecture(ckpt)
    if ckpt.kind != "gguf":  # a GGUF file's header was checked when it was resolved
        check_weights(ckpt.weight_files(), str(ckpt.repo_id if ckpt.kind == "hub" else ckpt.path))


def resolve(model: str, trust_remote_code: bool = False, gguf: bool = True) -> Checkpoint:
    """The checkpoint behind ``--model``, after the environment is set and with its architecture checked."""
    offline_env(model)
    ckpt = resolve_checkpoint(model, trust_remote_code, gguf=gguf)
    check_checkpoint(ckpt)
    return ckpt


#: held while a load has gguf's reader and name map swapped (see :func:`gguf_parsed_once`)
_GGUF_SWAP = threading.Lock()


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """transformers parsing a GGUF file once for a whole load, not once for each of its loaders.

    Its tokenizer, config (twice) and weight loaders each build a new ``gguf.GGUFReader`` over the file
    (~3 s of CPU each for SmolLM2), and the weight loader rebuilds gguf's tensor-name map for every module
    it walks (~400 times, ~5 s).  Within this block both are one per argument: the reader is read-only
    (memory-mapped) and the map is only looked up, so what loads is the same; the file is let go after.
    """
    import gguf

    with _GGUF_SWAP:
        saved = {name: getattr(gguf, name) for name in ("GGUFReader", "get_tensor_name_map")}
        for name, original in saved.items():
            setattr(gguf, name, functools.cache(original))
        try:
            yield
        finally:
            for name, original in saved.items():
                setattr(gguf, name, original)


@dataclass
class Loaded:
    """A transformers model and tokenizer read from a checkpoint."""

    name: str
    path: str
    model: Any  # None when only the tokenizer and config were asked for
    config: Any
    tokenizer: Any
    eos_ids: frozenset[int]
    pad_id: int
    checkpoint: Checkpoint


def load_checkpoint(ckpt: Checkpoint, dtype: Any = None, weights: bool = True) -> Loaded:
    """Load a causal LM into transformers (fp32 unless ``dtype`` says otherwise).

    ``weights=False`` reads only the tokenizer and config: loading (for GGUF,
    dequantizing) the weights is the slow part, and a cached ONNX export does not need them.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    source, kwargs = ckpt.source()
    what = ckpt.repo_id if ckpt.kind == "hub" else ckpt.path
    try:
        with gguf_parsed_once() if ckpt.kind == "gguf" else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            config = AutoConfig.from_pretrained(source, **kwargs)
            net = None
            if weights:
                net = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32, **kwargs)
                net.eval()
    except load_errors() as exc:
        raise ModelError(f"transformers cannot load {what}: {one_line(exc)}") from None
    eos: set[int] = set()
    gen_eos = getattr(net.generation_config, "eos_token_id", None) if net is not None else None
    for candidate in (tokenizer.eos_token_id, gen_eos, getattr(config, "eos_token_id", None)):
        if isinstance(candidate, int):
            eos.add(candidate)
        elif isinstance(candidate, (list, tuple)):
            eos.update(int(c) for c in candidate)
    if not eos:
        raise ModelError(f"{what} names no end-of-sequence token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    tokenizer.pad_token_id = pad
    tokenizer.padding_side = "left"
    return Loaded(ckpt.name, str(ckpt.path), net, config, tokenizer, frozenset(eos), pad, ckpt)


def render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text with the tokenizer's chat template (or a plain one if it has none)."""
    if tokenizer.chat_template:
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def encode_batch(tokenizer: Any, batch: list[list[dict[str, str]]]) -> tuple[Any, Any, list[int]]:
    """Left-padded ids and mask (numpy int64) for a batch, and each row's real length.

    Left padding keeps every row's last prompt token in the last column, so one
    decode step serves the whole batch.
    """
    texts = [render(tokenizer, m) for m in batch]
    enc = tokenizer(texts, return_tensors="np", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"].astype("int64"), enc["attention_mask"].astype("int64")
    return ids, mask, [int(n) for n in mask.sum(axis=1)]


def trim(tokens: list[int], eos_ids: frozenset[int], max_new: int) -> tuple[list[int], str]:
    """A row's answer up to (not including) its first end-of-sequence token."""
    for i, tok in enumerate(tokens[:max_new]):
        if tok in eos_ids:
            return tokens[:i], "stop"
    return tokens[:max_new], "length"


def overflow(width: int, lengths: list[int], max_new_tokens: int, n_ctx: int) -> list[Generation] | None:
    """Failed rows for a padded batch that cannot fit its new tokens in the context, else None."""
    msg = context_overflow(width, max_new_tokens, n_ctx)
    if msg is None:
        return None
    return [Generation("", n, 0, 0.0, 0.0, "error", error=msg) for n in lengths]


class PaddedBatchBackend(Backend):
    """An engine whose one-prompt path is a batch of one through ``generate_batch``."""

    tokenizer: Any
    n_ctx: int

    def prefill_tokens(self, prompts: list[list[dict[str, str]]], config: GenerationConfig) -> list[int]:
        """Every input token of each prompt (these engines keep no cache between calls); 0 for one too long
        for the window on its own."""
        texts = [render(self.tokenizer, m) for m in prompts]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [0 if context_overflow(n, config.max_new_tokens, self.n_ctx) else n for n in lengths]

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        return self.generate_batch([messages], config, on_first_token)[0]
