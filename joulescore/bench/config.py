"""What a run is asked to do: the settings that define a comparable rating."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from joulescore.backends.base import GenerationConfig

Protocol = Literal["energy-score", "natural"]
ReasoningMode = Literal["off", "on", "low", "medium", "high"]
ReasoningFamily = Literal["qwen3", "deepseek-r1", "smollm3", "gpt-oss", "none"]

#: The AI Energy Score protocol: batch 1, greedy, exactly 10 new tokens
#: (optimum-benchmark's energy_star scenario sets min_new_tokens = max_new_tokens)
#: and 10 warm-up prompts that are not counted.
ENERGY_SCORE_NEW_TOKENS = 10
ENERGY_SCORE_WARMUP = 10


class RunConfig(BaseModel):
    """The settings of one run, stored with it so that ``--resume`` repeats them exactly."""

    model_config = ConfigDict(extra="forbid")
    model: str
    task: str
    dataset: str | None = None
    #: a custom task: the user message template (with --dataset), its metric and reference field
    template: str | None = None
    metric: str | None = None
    reference_field: str | None = None
    backend: str = "llama.cpp"
    meter: str = "auto"
    protocol: Protocol = "energy-score"
    max_new_tokens: int = Field(ENERGY_SCORE_NEW_TOKENS, ge=1)
    limit: int | None = Field(None, ge=1)
    warmup: int = Field(ENERGY_SCORE_WARMUP, ge=0)
    batch_size: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    n_ctx: int = Field(4096, ge=128)
    #: llama.cpp: reuse the KV cache of the prefix a prompt shares with the previous one
    #: (the engine's default); False prefills every prompt from scratch, as engines without
    #: a prefix cache do
    prompt_cache: bool = True
    #: seconds of idle power measured before the run; 0: none, nothing subtracted
    idle_baseline_s: float = Field(0.0, ge=0.0)
    #: None: the model as it comes, no switch applied and no split (the default)
    reasoning: Optional[ReasoningMode] = None
    #: override the family detected from the model's metadata and chat template
    reasoning_family: Optional[ReasoningFamily] = None
    #: engine settings (None: the engine's default); see ``joulescore.bench.session.backend_options``
    dtype: str | None = None
    quantization: str | None = None
    device: str | None = None
    #: openai backend: the server's base URL, a command that serves it, per-request timeout and retries
    endpoint: str | None = None
    serve: str | None = None
    request_timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0)

    def generation(self) -> GenerationConfig:
        """Decoding settings: a fixed length under energy-score, free until EOS otherwise."""
        fixed = self.protocol == "energy-score"
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.max_new_tokens if fixed else 0,
            temperature=self.temperature,
            seed=self.seed,
        )
