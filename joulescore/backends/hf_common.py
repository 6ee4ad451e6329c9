"""What the transformers and ONNX Runtime engines share: loading, chat template, left padding.

Both load the same GGUF file through transformers' ``gguf_file=`` (dequantized
to fp32), so they answer with the same weights and tokenizer as llama.cpp
starts from.  Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from joulescore.backends.base import Backend, FirstTokenHook, Generation, GenerationConfig, context_overflow
from joulescore.backends.models import check_gguf, resolve_model
from joulescore.errors import ModelError

#: set (unless the user already set them) when a model is loaded, never at import
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TQDM_DISABLE": "1",  # the GGUF dequantizer draws a bar on stderr otherwise
}


def offline_env() -> None:
    """Never fetch from a hub, and draw no progress bars: called by each engine before it loads a model.

    huggingface_hub, transformers and tqdm read these variables when they are
    first imported, so engines call this before importing them.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


@dataclass
class Loaded:
    """A transformers model and tokenizer read from a GGUF file."""

    name: str
    path: str
    model: Any  # None when only the tokenizer and config were asked for
    config: Any
    tokenizer: Any
    eos_ids: frozenset[int]
    pad_id: int


def load_gguf(model: str, dtype: Any = None, weights: bool = True) -> Loaded:
    """Load a GGUF model into transformers (fp32 unless ``dtype`` says otherwise).

    ``weights=False`` reads only the tokenizer and config: dequantizing the
    weights is the slow part, and a cached ONNX export does not need them.
    """
    offline_env()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    resolved = resolve_model(model)
    check_gguf(resolved.path)
    folder, name = str(resolved.path.parent), resolved.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        net = None
        if weights:
            net = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype or torch.float32)
            net.eval()
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        raise ModelError(f"transformers cannot load {resolved.path}: {exc}") from None
    eos: set[int] = set()
    gen_eos = getattr(net.generation_config, "eos_token_id", None) if net is not None else None
    for candidate in (tokenizer.eos_token_id, gen_eos, getattr(config, "eos_token_id", None)):
        if isinstance(candidate, int):
            eos.add(candidate)
        elif isinstance(candidate, (list, tuple)):
            eos.update(int(c) for c in candidate)
    if not eos:
        raise ModelError(f"{resolved.path} names no end-of-sequence token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    tokenizer.pad_token_id = pad
    tokenizer.padding_side = "left"
    return Loaded(resolved.name, str(resolved.path), net, config, tokenizer, frozenset(eos), pad)


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

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        return self.generate_batch([messages], config, on_first_token)[0]
