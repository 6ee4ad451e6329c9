"""vLLM's offline engine on GPUs, with real continuous batching.

A batch's prompts are all submitted to vLLM's engine at once and the engine is
stepped as ``LLM.generate`` steps it (``llm_engine.add_request`` / ``step``),
so the scheduler batches them continuously.  Driving the steps here, instead of
one blocking ``generate`` call, lets the meter be read at the two moments of
ML.ENERGY's steady-state window: when every row has its first token, and when
the first row finishes.  Each request's own first-token and finish times come
from vLLM's ``RequestOutput.metrics`` (old and new field names), else from the
steps observed here.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from joulescore.backends.base import Backend, FirstTokenHook, Generation, SteadyEndHook, SteadyWindow, context_overflow
from joulescore.backends.models import ALIASES, resolve_model
from joulescore.backends.vllm_facts import request_times, split_revision, weights_summary
from joulescore.errors import BadInput, ModelError
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo
from joulescore.textfile import special_kind

# Fail at import when vLLM is missing, so load_backend gives the install hint; vLLM itself
# (seconds to import, and it starts CUDA) is imported only when a model is loaded.
if find_spec("vllm") is None:
    raise ModuleNotFoundError("No module named 'vllm'", name="vllm")

#: --dtype -> vLLM's dtype names
DTYPES = {None: "auto", "auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: vLLM's dtype names (and torch's) -> the names joulescore records
DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float": "fp32"}
#: vLLM's environment defaults: keep stdout for joulescore (``--json``); warnings go to stderr
VLLM_ENV = {"VLLM_CONFIGURE_LOGGING": "0"}
_request_ids = itertools.count()


@dataclass
class _Row:
    """One submitted request as the steps reveal it (perf_counter times, the meters' clock)."""

    index: int
    input_tokens: int
    submitted_s: float
    first_s: float | None = None
    end_s: float | None = None
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    output: Any = None
    token_times_s: list[float] = field(default_factory=list)
    token_chars: list[int] = field(default_factory=list)


class VllmBackend(Backend):
    name = "vllm"
    batching = "continuous"

    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096, seed: int = 0,
                 dtype: str | None = None, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_num_seqs: int | None = None, enforce_eager: bool = False) -> None:
        for key, value in VLLM_ENV.items():
            os.environ.setdefault(key, value)
        if dtype not in DTYPES:
            raise BadInput(f"vllm: unknown dtype {dtype!r}; choose one of auto, fp32, bf16, fp16")
        try:
            import vllm
        except ImportError as exc:
            raise BadInput(f"vllm is installed but cannot be imported: {_first_line(exc)}") from None
        self._vllm = vllm
        self.n_ctx = n_ctx
        source, revision, display = self._source(model)
        kwargs: dict[str, Any] = {
            "model": source, "dtype": DTYPES[dtype], "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": enforce_eager, "seed": seed,
            "max_model_len": n_ctx,
            # the offline LLM turns stats off by default, and with them RequestOutput.metrics
            "disable_log_stats": False,
        }
        if max_num_seqs is not None:
            kwargs["max_num_seqs"] = max_num_seqs
        if revision is not None:
            kwargs["revision"] = revision
        try:
            self.llm = vllm.LLM(**kwargs)
            self.tokenizer = self.llm.get_tokenizer()
        except Exception as exc:  # vLLM raises many kinds (OSError, ValueError, RuntimeError, CUDA's)
            raise ModelError(f"vllm cannot load {model}: {_first_line(exc)}") from None
        self.engine = self.llm.llm_engine
        self._info = self._describe(model, source, revision, display, kwargs)

    @staticmethod
    def _source(model: str) -> tuple[str, str | None, str | None]:
        """What vLLM loads (a shipped alias's GGUF file, a local path, or a hub id ``org/name@revision``),
        its revision, and the alias's display name."""
        if model in ALIASES:
            resolved = resolve_model(model)
            return str(resolved.path), None, resolved.name
        path = Path(model).expanduser()
        if path.exists():
            kind = special_kind(path)
            if kind is not None:  # vLLM would open it and wait for a writer forever
                raise ModelError(f"model path is {kind}, not a regular file: {model}")
            return str(path.resolve()), None, None
        name, revision = split_revision(model)
        return name, revision, None

    def _device(self) -> str:
        """The device vLLM runs on, as its config names it (CUDA unless a non-GPU build)."""
        config = getattr(self.engine, "device_config", None) or getattr(
            getattr(self.engine, "vllm_config", None), "device_config", None)
        device = getattr(config, "device_type", None) or getattr(config, "device", None)
        return str(device) if device else "cuda"

    def _describe(self, asked: str, source: str, revision: str | None, display: str | None,
                  kwargs: dict[str, Any]) -> ModelInfo:
        config = getattr(self.llm, "model_config", None) or getattr(self.engine, "model_config", None)
        hf_config = getattr(config, "hf_config", None)
        raw_dtype = str(getattr(config, "dtype", kwargs["dtype"])).removeprefix("torch.")
        dtype = DTYPE_NAMES.get(raw_dtype, raw_dtype)
        facts = weights_summary(source, revision)
        scheduler = getattr(self.engine, "scheduler_config", None) or getattr(
            getattr(self.engine, "vllm_config", None), "scheduler_config", None)
        quant = getattr(config, "quantization", None)
        extra: dict[str, Any] = {
            "dtype": dtype, "device": self._device(), "batching": self.batching,
            "tensor_parallel_size": kwargs["tensor_parallel_size"],
            "gpu_memory_utilization": kwargs["gpu_memory_utilization"],
            "max_num_seqs": getattr(scheduler, "max_num_seqs", kwargs.get("max_num_seqs")),
            "enforce_eager": kwargs["enforce_eager"],
            "chat_template": "tokenizer" if getattr(self.tokenizer, "chat_template", None) else "plain",
            "timing": "each request's first-token and finish times from vLLM's RequestOutput.metrics where it "
                      "gives them, else from the engine steps seen by joulescore",
            "engine_version": f"vllm {getattr(self._vllm, '__version__', 'unknown')}",
            **facts.extra,
        }
        return ModelInfo(
            name=display or facts.name or Path(source).name, path=facts.path or source, backend=self.name,
            quantization=str(quant) if quant else dtype, parameters=facts.parameters,
            architecture=getattr(hf_config, "model_type", None),
            context_length=getattr(config, "max_model_len", None) or self.n_ctx,
            extra={"asked_for": asked, **extra},
        )

    def info(self) -> ModelInfo:
        return self._info

    def chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None)
        return template if isinstance(template, str) else None

    def notes(self) -> list[str]:
        return ["vllm backend: NVML measures the whole GPU, so the GPU energy includes every process on it, "
                "not only this vLLM engine; vLLM's engine core runs in child processes, whose CPU time the "
                "CPU estimate counts"]

    # prompts ---------------------------------------------------------------
    def _render(self, messages: list[dict[str, str]], config: GenerationConfig) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      **config.template_kwargs)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return str(text) + config.assistant_prefix

    def _params(self, config: GenerationConfig) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=config.max_new_tokens, min_tokens=config.min_new_tokens, temperature=config.temperature,
            seed=config.seed, skip_special_tokens=not config.keep_special_tokens)

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        return self.generate_batch([messages], config, on_first_token)[0]

    def generate_batch(self, batch: list[list[dict[str, str]]], config: GenerationConfig,
                       on_first_token: FirstTokenHook | None = None,
                       on_steady_end: SteadyEndHook | None = None) -> list[Generation]:
        results: list[Generation | None] = [None] * len(batch)
        rows: dict[str, _Row] = {}
        params = self._params(config)
        for i, messages in enumerate(batch):
            ids = list(self.tokenizer.encode(self._render(messages, config), add_special_tokens=False))
            too_long = context_overflow(len(ids), config.max_new_tokens, self.n_ctx)
            if too_long is not None:
                results[i] = Generation("", len(ids), 0, 0.0, 0.0, "error", error=too_long)
                continue
            request_id = f"joulescore-{next(_request_ids)}"
            row = _Row(i, len(ids), time.perf_counter())
            try:
                returned = self.engine.add_request(request_id, {"prompt_token_ids": ids}, params)
            except ValueError as exc:  # vLLM refuses a prompt it cannot hold
                results[i] = Generation("", len(ids), 0, 0.0, 0.0, "error", error=f"vllm: {_first_line(exc)}")
                continue
            rows[request_id] = row
            if isinstance(returned, str) and returned != request_id:
                rows[returned] = row
        self._drive(rows, SteadyWindow(len({id(r) for r in rows.values()}), on_first_token, on_steady_end))
        for row in {id(r): r for r in rows.values()}.values():
            results[row.index] = self._generation(row)
        return [g if g is not None else Generation("", 0, 0, 0.0, 0.0, "error", error="no answer") for g in results]

    def _drive(self, rows: dict[str, _Row], window: SteadyWindow) -> None:
        """Step the engine until every submitted row has finished, watching each step's tokens."""
        pending = {id(r) for r in rows.values()}
        try:
            while pending:
                outputs = self.engine.step()
                now = time.perf_counter()
                new_tokens = first_now = finished_now = 0
                for out in outputs:
                    row = rows.get(str(getattr(out, "request_id", "")))
                    if row is None or id(row) not in pending or not out.outputs:
                        continue
                    completion = out.outputs[0]
                    ids = list(completion.token_ids)
                    gained = len(ids) - len(row.token_ids)
                    if gained > 0:
                        if row.first_s is None:
                            row.first_s = now
                            first_now += 1
                        new_tokens += gained
                        row.token_times_s += [now] * gained
                        row.token_chars += [len(completion.text)] * gained
                    row.token_ids, row.text, row.output = ids, completion.text, out
                    if out.finished:
                        row.end_s, row.finish = now, str(completion.finish_reason)
                        if row.first_s is None:
                            first_now += 1  # ended without a token: it will never start
                        pending.discard(id(row))
                        finished_now += 1
                window.step(new_tokens, first_now, finished_now)
                if not outputs and not self.engine.has_unfinished_requests():
                    break  # the engine lost them: what is pending fails below
        finally:
            if pending:  # interrupted (Ctrl-C) or lost: free the engine's slots
                left = [k for k, r in rows.items() if id(r) in pending]
                try:
                    self.engine.abort_request(left)
                except Exception:  # best effort while unwinding
                    pass

    def _generation(self, row: _Row) -> Generation:
        end = row.end_s if row.end_s is not None else time.perf_counter()
        first = row.first_s if row.first_s is not None else end
        timed = request_times(getattr(row.output, "metrics", None))
        ttft_s, decode_s = timed if timed is not None else (first - row.submitted_s, end - first)
        cached = int(getattr(row.output, "num_cached_tokens", 0) or 0)
        finish, error = _finish(row.finish)
        return Generation(row.text, row.input_tokens, len(row.token_ids), ttft_s, decode_s, finish, error=error,
                          token_times_s=row.token_times_s, token_chars=row.token_chars,
                          cached_input_tokens=cached)

    def close(self) -> None:
        core = getattr(getattr(self, "engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # freeing GPU memory is best effort at exit
                pass
        self.__dict__.pop("llm", None)
        self.__dict__.pop("engine", None)


def _finish(reason: str | None) -> tuple[str, str | None]:
    """vLLM's finish reason as the runner's ("stop", "length" or "error" with why)."""
    if reason in ("stop", "length"):
        return reason, None
    return "error", f"vllm ended the request: {reason or 'no output'}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
