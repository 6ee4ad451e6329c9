"""A stand-in for vLLM at the import boundary: the public surface joulescore's engine uses, no GPU.

Put ``tests/fake_vllm`` on PYTHONPATH and ``import vllm`` finds this.  It keeps
vLLM's contract where joulescore depends on it:

* ``LLM(**engine_args)`` refuses arguments vLLM's EngineArgs would not take, and
  the offline LLM's default ``disable_log_stats=True`` leaves ``RequestOutput.metrics``
  as None, as vLLM does;
* ``llm.llm_engine`` takes ``add_request(id, {"prompt_token_ids": [...]}, params)``
  and ``step()`` schedules continuously: at most ``max_num_seqs`` requests run,
  a waiting one joins when a slot frees, each step gives every running request
  one token (its first on the step that prefills it), outputs are cumulative;
* a request stops at EOS once past ``min_tokens`` (after a length set by its
  prompt), or at ``max_tokens``.

Environment: FAKE_VLLM_METRICS = v1 (default; RequestStateStats names), v0
(RequestMetrics names) or none; FAKE_VLLM_STEP_S = seconds per step (default
0.002); FAKE_VLLM_LOG = a file that gets the LLM's arguments as JSON.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

__version__ = "0.0.0+stand-in"

EOS = 2
ENGINE_ARGS = {"model", "dtype", "tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs", "enforce_eager",
               "seed", "max_model_len", "disable_log_stats", "revision", "tokenizer", "trust_remote_code"}
VOCAB = ["the", "sky", "is", "blue", "because", "light", "scatters", "more", "at", "short", "wavelengths", "."]


class SamplingParams:
    def __init__(self, max_tokens: int = 16, min_tokens: int = 0, temperature: float = 1.0, seed: int | None = None,
                 skip_special_tokens: bool = True) -> None:
        if min_tokens > max_tokens:
            raise ValueError("min_tokens must be less than or equal to max_tokens")
        self.max_tokens, self.min_tokens, self.temperature = max_tokens, min_tokens, temperature
        self.seed, self.skip_special_tokens = seed, skip_special_tokens


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestStateStats:  # vLLM V1's names: wall-clock arrival, engine-core monotonic token times
    num_generation_tokens: int = 0
    arrival_time: float = 0.0
    queued_ts: float = 0.0
    scheduled_ts: float = 0.0
    first_token_ts: float = 0.0
    last_token_ts: float = 0.0
    first_token_latency: float = 0.0


@dataclass
class RequestMetrics:  # older vLLM's names, all wall clock
    arrival_time: float
    last_token_time: float
    first_scheduled_time: float | None
    first_token_time: float | None
    time_in_queue: float | None
    finished_time: float | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool
    metrics: Any = None
    num_cached_tokens: int | None = 0


class Tokenizer:
    """Words to ids and back; a chat template that writes role-tagged turns."""

    chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
    eos_token_id = EOS

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True, **kwargs: Any) -> str:
        assert not tokenize
        text = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [10 + sum(map(ord, w)) % 1000 for w in text.split()]
        return ([1] if add_special_tokens else []) + ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(" " + VOCAB[i % len(VOCAB)] for i in ids if not (skip_special_tokens and i == EOS))


@dataclass
class _Request:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    arrival_wall: float
    natural_len: int
    tokens: list[int] = field(default_factory=list)
    first_wall: float | None = None
    first_mono: float = 0.0
    last_mono: float = 0.0
    finish: str | None = None


class _ModelConfig:
    def __init__(self, model: str, dtype: str, max_model_len: int) -> None:
        self.model, self.max_model_len, self.quantization = model, max_model_len, None
        self.dtype = "torch.bfloat16" if dtype == "auto" else f"torch.{dtype}"
        self.hf_config = type("HFConfig", (), {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})()


class _SchedulerConfig:
    def __init__(self, max_num_seqs: int) -> None:
        self.max_num_seqs = max_num_seqs


class LLMEngine:
    def __init__(self, args: dict[str, Any]) -> None:
        self.model_config = _ModelConfig(args["model"], args.get("dtype", "auto"), args.get("max_model_len", 2048))
        self.scheduler_config = _SchedulerConfig(args.get("max_num_seqs") or 256)
        self.log_stats = not args.get("disable_log_stats", True)
        self.style = os.environ.get("FAKE_VLLM_METRICS", "v1")
        self.step_s = float(os.environ.get("FAKE_VLLM_STEP_S", "0.002"))
        self.tokenizer = Tokenizer()
        self.waiting: list[_Request] = []
        self.running: list[_Request] = []
        self.ids: set[str] = set()

    def add_request(self, request_id: str, prompt: dict[str, Any], params: SamplingParams) -> str:
        if not isinstance(prompt, dict) or "prompt_token_ids" not in prompt:
            raise TypeError("the stand-in takes TokensPrompt dicts only")
        if request_id in self.ids:
            raise ValueError(f"Request id {request_id} already running.")
        ids = list(prompt["prompt_token_ids"])
        if len(ids) + params.max_tokens > self.model_config.max_model_len:
            raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model length")
        self.ids.add(request_id)
        self.waiting.append(_Request(request_id, ids, params, time.time(), 2 + len(ids) % 4))
        return request_id

    def abort_request(self, request_ids: list[str]) -> None:
        self.waiting = [r for r in self.waiting if r.request_id not in request_ids]
        self.running = [r for r in self.running if r.request_id not in request_ids]

    def has_unfinished_requests(self) -> bool:
        return bool(self.waiting or self.running)

    def step(self) -> list[RequestOutput]:
        while self.waiting and len(self.running) < self.scheduler_config.max_num_seqs:
            self.running.append(self.waiting.pop(0))
        time.sleep(self.step_s)
        outputs = []
        for req in self.running:
            pos = len(req.tokens) + 1  # this token's place in the answer
            eos = pos >= req.natural_len and pos > req.params.min_tokens
            req.tokens.append(EOS if eos else 10 + (sum(req.prompt_token_ids) + pos) % 1000)
            req.last_mono = time.monotonic()
            if req.first_wall is None:
                req.first_wall, req.first_mono = time.time(), req.last_mono
            if req.tokens[-1] == EOS:
                req.finish = "stop"
            elif len(req.tokens) >= req.params.max_tokens:
                req.finish = "length"
            outputs.append(self._output(req))
        for req in [r for r in self.running if r.finish]:
            self.running.remove(req)
            self.ids.discard(req.request_id)
        return outputs

    def _metrics(self, req: _Request) -> Any:
        if not self.log_stats or self.style == "none":
            return None
        assert req.first_wall is not None
        if self.style == "v0":
            return RequestMetrics(req.arrival_wall, time.time(), req.arrival_wall, req.first_wall, 0.0,
                                  time.time() if req.finish else None)
        return RequestStateStats(len(req.tokens), req.arrival_wall, first_token_ts=req.first_mono,
                                 last_token_ts=req.last_mono, first_token_latency=req.first_wall - req.arrival_wall)

    def _output(self, req: _Request) -> RequestOutput:
        text = self.tokenizer.decode(req.tokens, skip_special_tokens=req.params.skip_special_tokens)
        completion = CompletionOutput(0, text, list(req.tokens), finish_reason=req.finish)
        return RequestOutput(req.request_id, None, req.prompt_token_ids, None, [completion], req.finish is not None,
                             self._metrics(req))


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        unknown = set(kwargs) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        args = {"model": model, **kwargs}
        args.setdefault("disable_log_stats", True)  # the offline LLM's default
        if os.environ.get("FAKE_VLLM_LOG"):
            with open(os.environ["FAKE_VLLM_LOG"], "w", encoding="utf-8") as fh:
                json.dump(args, fh)
        if model.startswith("missing/"):
            raise OSError(f"{model} is not a local folder and is not a valid model identifier listed on "
                          f"'https://huggingface.co/models'\nIf this is a private repository, ...")
        self.llm_engine = LLMEngine(args)

    def get_tokenizer(self) -> Tokenizer:
        return self.llm_engine.tokenizer
