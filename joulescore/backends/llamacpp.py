"""llama.cpp through llama-cpp-python, for GGUF models on CPU (or GPU where built for it).

The prompt is rendered with the chat template stored in the GGUF metadata,
tokenized once, and decoded token by token with ``Llama.generate`` so the
moment the first token appears (the end of prefill) is observed exactly.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterable, Sequence
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama, LogitsProcessorList
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from joulescore.backends.base import Backend, FirstTokenHook, Generation, context_overflow
from joulescore.backends.cpu_build import parse_system_info
from joulescore.backends.models import check_gguf, resolve_model
from joulescore.errors import ModelError
from joulescore.hardware import logical_cpus
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo

# llama_ftype values (llama.h) -> the quantization names users know.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def render_prompt(formatter: Jinja2ChatFormatter, messages: list[dict[str, str]],
                  template_kwargs: dict[str, Any] | None = None, assistant_prefix: str = "") -> str:
    """The prompt text: the chat template with any extra variables (a reasoning switch), then the forced reply start."""
    chat: Any = messages  # llama_cpp types them as its request TypedDicts; plain dicts are what it reads
    return formatter(messages=chat, **(template_kwargs or {})).prompt + assistant_prefix


def reusable_prefix(previous: Iterable[int], tokens: Sequence[int]) -> int:
    """Prompt tokens llama-cpp-python takes from the KV cache after ``previous`` rather than prefill.

    It keeps the longest prefix shared with the previous prompt (a prompt
    wholly cached still replays its last token); after a reset there is none.
    """
    shared = 0
    for a, b in zip(previous, tokens):
        if a != b:
            break
        shared += 1
    return shared - 1 if shared and shared == len(tokens) else shared


class LlamaCppBackend(Backend):
    name = "llama.cpp"

    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096, seed: int = 0,
                 n_batch: int = 512, prompt_cache: bool = True, gpu_layers: int | None = None) -> None:
        resolved = resolve_model(model)
        check_gguf(resolved.path)
        self.threads = threads or logical_cpus()
        self.n_ctx = n_ctx
        #: keep the KV cache of the prefix shared with the previous prompt (llama.cpp's and
        #: llama-server's default); off, every prompt is prefilled from scratch
        self.prompt_cache = prompt_cache
        # A CUDA (or Metal...) build offloads every layer unless told otherwise; a CPU build cannot.
        can_offload = bool(llama_cpp.llama_supports_gpu_offload())
        layers = (-1 if can_offload else 0) if gpu_layers is None else gpu_layers
        if layers and not can_offload:
            raise ModelError("this llama-cpp-python was built without GPU support, so --gpu-layers cannot offload; "
                             "rebuild it with CMAKE_ARGS='-DGGML_CUDA=on' (see README)")
        try:
            self.llm = Llama(
                model_path=str(resolved.path), n_ctx=n_ctx, n_batch=n_batch, n_threads=self.threads,
                n_threads_batch=self.threads, seed=seed, verbose=False, n_gpu_layers=layers,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"llama.cpp cannot load {resolved.path}: {exc}") from None
        meta = self.llm.metadata
        vocab = self.llm._model.vocab
        self._eog = frozenset(t for t in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t))
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        self._template = meta.get("tokenizer.chat_template")
        self._template_source = "gguf" if self._template else "plain (none in GGUF)"
        self._formatter = Jinja2ChatFormatter(
            template=meta.get("tokenizer.chat_template") or PLAIN_TEMPLATE,
            eos_token=self._token_text(eos_id),
            bos_token=self._token_text(bos_id),
            stop_token_ids=[eos_id],
        )
        file_type = meta.get("general.file_type")
        arch = meta.get("general.architecture")
        ctx_len = meta.get(f"{arch}.context_length") if arch else None
        self._info = ModelInfo(
            name=resolved.name,
            path=str(resolved.path),
            backend=self.name,
            quantization=FILE_TYPES.get(int(file_type), f"ftype {file_type}") if file_type else None,
            parameters=int(self.llm._model.n_params()),
            architecture=arch,
            context_length=int(ctx_len) if ctx_len else None,
            extra={
                "gguf_name": meta.get("general.name"),
                "size_bytes": int(self.llm._model.size()),
                "chat_template": self._template_source,
                "threads": self.threads,
                "n_ctx": n_ctx,
                "prompt_cache": prompt_cache,
                "n_batch": n_batch,
                "gpu_offload": bool(layers),
                "gpu_layers": layers,
                "engine_version": llama_cpp.__version__,
                # what the CPU kernels were compiled for: a portable AVX2 build and an AVX-512 one differ in speed
                "cpu_isa": parse_system_info(llama_cpp.llama_print_system_info().decode("utf-8", "replace")),
            },
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self.llm._model.token_get_text(token)
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)

    def info(self) -> ModelInfo:
        return self._info

    def chat_template(self) -> str | None:
        return self._template

    def render(self, messages: list[dict[str, str]], template_kwargs: dict[str, Any] | None = None,
               assistant_prefix: str = "") -> str:
        """The prompt text this model sees, reasoning switch included."""
        return render_prompt(self._formatter, messages, template_kwargs, assistant_prefix)

    def prompt_tokens(self, messages: list[dict[str, str]], template_kwargs: dict[str, Any] | None = None,
                      assistant_prefix: str = "") -> list[int]:
        """The exact tokens the model sees for these messages, chat template applied."""
        prompt = self.render(messages, template_kwargs, assistant_prefix)
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _ban_eog_until(self, count: list[int], min_new: int) -> LogitsProcessorList:
        banned = np.fromiter(self._eog, dtype=np.int64)

        def processor(_ids: Any, scores: np.ndarray) -> np.ndarray:
            if count[0] < min_new:
                scores[banned] = -np.inf
            return scores

        return LogitsProcessorList([processor])

    def _reusable_prefix(self, tokens: list[int]) -> int:
        """Prompt tokens llama-cpp-python will take from the KV cache rather than prefill."""
        return reusable_prefix(self.llm._input_ids, tokens)

    def prefill_tokens(self, prompts: list[list[dict[str, str]]], config: GenerationConfig) -> list[int]:
        """Each prompt's tokens less the prefix the cache keeps from the one before (as ``generate`` counts it);
        a prompt too long for the window is refused, prefills nothing and leaves the cache as it was."""
        out: list[int] = []
        previous: list[int] = []
        for messages in prompts:
            tokens = self.prompt_tokens(messages, config.template_kwargs, config.assistant_prefix)
            if context_overflow(len(tokens), config.max_new_tokens, self.n_ctx) is not None:
                out.append(0)
                continue
            out.append(len(tokens) - (reusable_prefix(previous, tokens) if self.prompt_cache else 0))
            previous = tokens
        return out

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        tokens = self.prompt_tokens(messages, config.template_kwargs, config.assistant_prefix)
        n_in = len(tokens)
        too_long = context_overflow(n_in, config.max_new_tokens, self.n_ctx)
        if too_long is not None:
            return Generation("", n_in, 0, 0.0, 0.0, "error", error=too_long)
        if not self.prompt_cache:
            self.llm.reset()  # forget the previous prompt: every token is prefilled
        cached = self._reusable_prefix(tokens)
        count = [0]
        processor = self._ban_eog_until(count, config.min_new_tokens) if config.min_new_tokens else None
        out: list[int] = []
        pieces: list[str] = []
        times: list[float] = []
        chars: list[int] = []
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        n_chars = 0
        finish = "length"
        start = time.perf_counter()
        first: float | None = None
        for token in self.llm.generate(tokens, temp=config.temperature, top_k=40, top_p=0.95, min_p=0.05,
                                       repeat_penalty=1.0, reset=True, logits_processor=processor):
            if first is None:
                first = time.perf_counter()
                if on_first_token is not None:
                    on_first_token()
            if token in self._eog:
                finish = "stop"
                break
            out.append(token)
            times.append(time.perf_counter())
            piece = decoder.decode(self.llm._model.detokenize([token], special=config.keep_special_tokens))
            pieces.append(piece)
            n_chars += len(piece)
            chars.append(n_chars)
            count[0] = len(out)
            if len(out) >= config.max_new_tokens:
                break
        end = time.perf_counter()
        first = first if first is not None else end
        text = "".join(pieces) + decoder.decode(b"", final=True)
        return Generation(text, n_in, len(out), first - start, end - first, finish,
                          token_times_s=times, token_chars=chars, cached_input_tokens=cached)

    def close(self) -> None:
        self.llm.close()
