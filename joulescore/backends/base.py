"""The interface every inference engine implements, so the runner never knows vendors.

A backend turns chat messages into a completion and reports the moments the
runner needs to split energy by phase: when the first token came (end of
prefill) and when the last one did.  The runner reads the meter at those
moments through the ``on_first_token`` callback, so backends need not know
meters either.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo


@dataclass
class Generation:
    """One finished (or failed) completion and its timing."""

    text: str
    input_tokens: int
    output_tokens: int
    prefill_s: float
    decode_s: float
    finish_reason: str  # "stop", "length" or "error"
    error: str | None = None
    #: clock time (``time.perf_counter``, the meters' clock) each output token arrived
    token_times_s: list[float] = field(default_factory=list)
    #: ``len(text)`` after each output token, so a character position maps to a token
    token_chars: list[int] = field(default_factory=list)
    #: prompt tokens the engine did not prefill because its KV cache already held them
    #: (llama.cpp keeps the prefix shared with the previous prompt)
    cached_input_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def context_overflow(prompt_tokens: int, max_new_tokens: int, n_ctx: int) -> str | None:
    """Why a prompt plus its new tokens cannot fit the context window, or None if it fits.

    One check for every local engine, so they refuse the same prompts with the same words.
    """
    if prompt_tokens + max_new_tokens <= n_ctx:
        return None
    return f"prompt of {prompt_tokens} tokens + {max_new_tokens} new exceeds the context of {n_ctx}"


FirstTokenHook = Callable[[], None]
#: called once when a batch stops being full (its first row ended, or all ended together),
#: with the output tokens produced by all rows since the batch's first-token moment
SteadyEndHook = Callable[[int], None]



class SteadyWindow:
    """A batch's steady-state window (the ML.ENERGY method), kept by every batching engine the same way.

    The window opens when every row has started (its first token came, or it ended without one) and
    closes when the first row ends.  The rule for which tokens count, in one place:

    - a token counts when the batch was already full before the engine step that made it and the
      window had not closed before that step (so no row's first token counts, and the tokens made in
      the step that closes the window do);
    - end-of-sequence tokens are not output: engines that see them leave them out of ``tokens``;
    - a window that closes in the same step it opened spans no time, so it is not reported.

    ``on_first_token`` fires when the batch becomes full, ``on_steady_end`` (with the counted tokens)
    when a reported window closes.  Request threads may share one window: every step holds a lock.
    """

    def __init__(self, rows: int, on_first_token: FirstTokenHook | None = None,
                 on_steady_end: SteadyEndHook | None = None) -> None:
        self.rows = rows
        self.on_first_token, self.on_steady_end = on_first_token, on_steady_end
        self.started = 0
        self.full = False
        self.closed = False
        self.tokens = 0
        self._lock = threading.Lock()

    def step(self, tokens: int = 0, started: int = 0, ended: int = 0) -> None:
        """Account one engine step: output tokens made, rows that started in it, rows that ended in it."""
        with self._lock:
            was_full = self.full
            if was_full and not self.closed:
                self.tokens += tokens
            self.started += started
            if not self.full and self.started >= self.rows:
                self.full = True
                if self.on_first_token is not None:
                    self.on_first_token()
            if ended and not self.closed:
                self.closed = True
                if was_full and self.on_steady_end is not None:
                    self.on_steady_end(self.tokens)


class Backend(ABC):
    """An inference engine with one model loaded."""

    name: str = "backend"
    #: "generative" backends write text; "encoder" backends run only tasks with an encoder section
    kind: str = "generative"
    #: what one prompt is: "text", or a file ("audio", "image"; ``joulescore.backends.media``)
    inputs: str = "text"
    #: how ``generate_batch`` runs a batch: "sequential" (one prompt after another),
    #: "static" (one padded batch through the model) or "concurrent" (requests in flight together)
    batching: str = "sequential"

    @abstractmethod
    def info(self) -> ModelInfo:
        """The loaded model, as recorded with each run."""

    @abstractmethod
    def generate(
        self,
        messages: list[dict[str, str]],
        config: GenerationConfig,
        on_first_token: FirstTokenHook | None = None,
    ) -> Generation:
        """Answer one chat prompt.  Calls ``on_first_token`` the moment prefill ends."""

    def check_task(self, spec: Any) -> None:
        """Raise BadInput when the loaded model cannot run this task (``spec`` is a TaskSpec)."""

    def chat_template(self) -> str | None:
        """The model's own chat template, read to detect its reasoning family; None if unknown."""
        return None

    def generate_batch(
        self,
        batch: list[list[dict[str, str]]],
        config: GenerationConfig,
        on_first_token: FirstTokenHook | None = None,
        on_steady_end: SteadyEndHook | None = None,
    ) -> list[Generation]:
        """Answer several prompts.  Engines that batch natively override this.

        ``on_first_token`` fires once, when every row has its first token (the batch
        is full); ``on_steady_end`` fires once, when the first row finishes.  This
        default answers the prompts one after another, so it never calls
        ``on_steady_end``: a sequential "batch" has no steady state.
        """
        out: list[Generation] = []
        fired = False

        def first() -> None:
            nonlocal fired
            if not fired and on_first_token is not None:
                fired = True
                on_first_token()

        for messages in batch:
            out.append(self.generate(messages, config, on_first_token=first))
        return out

    def prefill_tokens(self, prompts: list[list[dict[str, str]]], config: GenerationConfig) -> list[int] | None:
        """The input tokens the engine would prefill for each prompt, answered one after another in this order
        (its prefix cache taken into account; 0 for a prompt it would refuse), computed without running the model.

        None where this engine cannot tell before it runs (the default: no tokenizer at hand).
        """
        return None

    def notes(self) -> list[str]:
        """What the meter's figures cover for this engine (added to the run's meter notes)."""
        return []

    def close(self) -> None:
        """Free the model."""
