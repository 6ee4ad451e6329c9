"""Reasoning switches and the reasoning/answer split, for any engine.

Each model family turns its "thinking" on and off its own way: Qwen3 through
the chat template's ``enable_thinking`` variable, DeepSeek-R1 and its distills
by opening a ``<think>`` block in the prompt, SmolLM3 by ``/think`` and
``/no_think`` in the system message, gpt-oss by ``Reasoning: low|medium|high``
in its Harmony system message (the ``reasoning_effort`` template variable).
A model with no switch gets *prompted* reasoning: an instruction to think step
by step and end with a ``Final answer:`` line.  This module knows nothing of
engines: a backend only renders the template variables and assistant prefix a
plan asks for, and reports per-token times so the split can be timed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Mode = Literal["off", "on", "low", "medium", "high"]
Method = Literal["native", "prompted"]
SplitFormat = Literal["think", "harmony", "prompted", "none"]
#: closed: reasoning then an answer; truncated: the budget ran out inside the reasoning;
#: unclosed: the model stopped inside its reasoning; unmarked: a prompted answer without
#: the marker (scored whole, no reasoning counted); none: no reasoning section at all.
State = Literal["closed", "truncated", "unclosed", "unmarked", "none"]

ReasoningMode = Mode
ReasoningFamily = Literal["qwen3", "deepseek-r1", "smollm3", "gpt-oss", "none"]
MODES: tuple[str, ...] = get_args(ReasoningMode)
FAMILIES: tuple[str, ...] = get_args(ReasoningFamily)

#: Output-token budgets (max new tokens) when the user gives none.  Reasoning
#: needs room: a thinking model cut off mid-thought produces no answer at all.
DEFAULT_BUDGETS: dict[str, int] = {"off": 256, "low": 512, "on": 1024, "medium": 1024, "high": 2048}

PROMPTED_MARKER = "Final answer:"
PROMPTED_INSTRUCTION = (
    "Think step by step: write out your reasoning first. Then finish with one last line "
    f"of the form '{PROMPTED_MARKER} X', where X is your answer."
)
_PROMPTED_RE = re.compile(r"^[ \t*#>]*final answer[ \t*]*:", re.IGNORECASE | re.MULTILINE)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
HARMONY_ANALYSIS = "<|channel|>analysis<|message|>"
HARMONY_FINAL = "<|channel|>final<|message|>"
_HARMONY_TRAILERS = ("<|return|>", "<|end|>", "<|call|>")


def detect_family(name: str | None, architecture: str | None, chat_template: str | None) -> str:
    """The reasoning family from GGUF ``general.name``, ``general.architecture`` and the chat template.

    The template is the stronger evidence (a fine-tune keeps its base's
    template, not its name), so it is read first; names and architectures
    only decide when the template says nothing.
    """
    tpl = chat_template or ""
    label = f"{name or ''} {architecture or ''}".lower()
    if "<|channel|>" in tpl or "reasoning_effort" in tpl or "gpt-oss" in label or "gpt_oss" in label:
        return "gpt-oss"
    if "/no_think" in tpl or "smollm3" in label:
        return "smollm3"
    if "enable_thinking" in tpl and THINK_OPEN in tpl:
        return "qwen3"
    if "<｜Assistant｜>" in tpl and THINK_OPEN in tpl:
        return "deepseek-r1"
    if re.search(r"deepseek[- _]?r1|r1[- _]distill", label):
        return "deepseek-r1"  # early R1 templates did not write <think> themselves
    if not tpl and re.search(r"\bqwen3", label):
        return "qwen3"  # no template to read: trust the name
    return "none"


@dataclass(frozen=True)
class ReasoningPlan:
    """How one model is asked for one reasoning mode, and how its output is split."""

    mode: str
    family: str
    method: Method
    budget: int
    split: SplitFormat
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: text forced at the start of the reply, after the template's generation prompt
    assistant_prefix: str = ""
    #: appended to the system message (created if absent)
    system_suffix: str = ""
    #: the reply begins inside the reasoning section (the prompt opened ``<think>``)
    starts_in_reasoning: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """What the run record stores as ``config.reasoning``."""
        return {"mode": self.mode, "family": self.family, "method": self.method, "budget": self.budget,
                "split": self.split, "template_kwargs": dict(self.template_kwargs),
                "assistant_prefix": self.assistant_prefix, "system_suffix": self.system_suffix,
                "note": self.note}

    def apply(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The task's messages with this plan's system flag or instruction added."""
        if not self.system_suffix:
            return [dict(m) for m in messages]
        out = [dict(m) for m in messages]
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content'].rstrip()} {self.system_suffix}".strip()
        else:
            out.insert(0, {"role": "system", "content": self.system_suffix})
        return out


def plan_reasoning(mode: str, family: str, budget: int, chat_template: str | None = None) -> ReasoningPlan:
    """Each family's own switch for ``mode``; a family with none gets prompted reasoning.

    ``low``/``medium``/``high`` are native only to gpt-oss; elsewhere they mean
    "on" and differ only by budget.  gpt-oss has no off switch: ``off`` is its
    lowest effort, ``low``, and the record says so.
    """
    if mode not in MODES:
        raise ValueError(f"unknown reasoning mode {mode!r}; choose one of: {', '.join(MODES)}")
    if family not in FAMILIES:
        raise ValueError(f"unknown reasoning family {family!r}; choose one of: {', '.join(FAMILIES)}")
    on = mode != "off"
    if family == "qwen3":
        return ReasoningPlan(mode, family, "native", budget, "think", {"enable_thinking": on},
                             note="Qwen3 thinks by default; enable_thinking=false makes the template "
                                  "write an empty <think></think> block")
    if family == "deepseek-r1":
        # Later R1 templates open <think> themselves, early ones did not; "off" closes it at once.
        opened = chat_template is not None and "<｜Assistant｜><think>" in chat_template
        prefix = ("" if opened else THINK_OPEN + "\n") + ("" if on else "\n</think>\n\n")
        return ReasoningPlan(mode, family, "native", budget, "think", assistant_prefix=prefix,
                             starts_in_reasoning=on,
                             note="R1 distills have no off switch: off pre-fills an empty think block, "
                                  "which the model may ignore")
    if family == "smollm3":
        flag = "/think" if on else "/no_think"
        return ReasoningPlan(mode, family, "native", budget, "think", {"enable_thinking": on},
                             system_suffix=flag, note=f"system flag {flag} (and enable_thinking)")
    if family == "gpt-oss":
        effort = {"off": "low", "on": "medium"}.get(mode, mode)
        note = "gpt-oss cannot switch reasoning off: off runs at effort low" if mode == "off" else \
            f"Harmony system message 'Reasoning: {effort}'"
        return ReasoningPlan(mode, family, "native", budget, "harmony", {"reasoning_effort": effort}, note=note)
    if not on:
        return ReasoningPlan(mode, family, "prompted", budget, "none",
                             note="no native switch: the task prompt unchanged")
    return ReasoningPlan(mode, family, "prompted", budget, "prompted", system_suffix=PROMPTED_INSTRUCTION,
                         note=f"no native switch: prompted to reason, then '{PROMPTED_MARKER} X'")


@dataclass(frozen=True)
class Split:
    """One response cut into its reasoning and its answer."""

    state: State
    reasoning: str
    answer: str
    #: characters of the raw text up to the end of the reasoning section (0: none)
    boundary_char: int

    @property
    def scored(self) -> bool:
        """Whether the metric sees an answer: never for reasoning that did not close."""
        return self.state not in ("truncated", "unclosed")


def _unclosed(text: str, finish_reason: str | None) -> Split:
    state: State = "truncated" if finish_reason == "length" else "unclosed"
    return Split(state, text, "", len(text))


def split_text(text: str, fmt: SplitFormat, finish_reason: str | None,
               starts_in_reasoning: bool = False) -> Split:
    """Cut ``text`` (special tokens kept) at the end of its reasoning section."""
    if fmt == "think":
        close = text.find(THINK_CLOSE)
        if close >= 0:
            end = close + len(THINK_CLOSE)
            reasoning = text[:close].split(THINK_OPEN, 1)[-1]
            return Split("closed", reasoning.strip(), text[end:].strip(), end)
        if starts_in_reasoning or text.lstrip().startswith(THINK_OPEN):
            return _unclosed(text, finish_reason)
        return Split("none", "", text.strip(), 0)
    if fmt == "harmony":
        final = text.find(HARMONY_FINAL)
        if final >= 0:
            end = final + len(HARMONY_FINAL)
            answer = text[end:]
            for trailer in _HARMONY_TRAILERS:
                answer = answer.split(trailer, 1)[0]
            reasoning = text[:final].split(HARMONY_ANALYSIS, 1)[-1].split("<|end|>", 1)[0]
            return Split("closed" if HARMONY_ANALYSIS in text[:final] else "none", reasoning.strip(),
                         answer.strip(), end if HARMONY_ANALYSIS in text[:final] else 0)
        if HARMONY_ANALYSIS in text or starts_in_reasoning:
            return _unclosed(text, finish_reason)
        return Split("none", "", text.strip(), 0)
    if fmt == "prompted":
        match = _PROMPTED_RE.search(text)
        if match:
            return Split("closed", text[: match.start()].strip(), text[match.end():].strip(), match.end())
        if finish_reason == "length":
            return _unclosed(text, finish_reason)
        return Split("unmarked", "", text.strip(), 0)
    return Split("none", "", text.strip(), 0)


@dataclass(frozen=True)
class TokenSplit:
    """The split in tokens and in time, as the runner needs it to divide decode energy."""

    split: Split
    reasoning_tokens: int
    answer_tokens: int
    #: clock time (the meters' perf_counter clock) the reasoning section ended; None: no timing
    boundary_s: float | None
    #: True when token counts were estimated from characters (a backend without per-token offsets)
    estimated: bool


def split_tokens(split: Split, text_len: int, output_tokens: int, token_chars: list[int],
                 token_times_s: list[float]) -> TokenSplit:
    """Map a character boundary to the token that completed it and the time that token came."""
    if split.boundary_char <= 0 or output_tokens == 0:
        return TokenSplit(split, 0, output_tokens, None, False)
    if split.state in ("truncated", "unclosed"):
        last = token_times_s[-1] if token_times_s else None
        return TokenSplit(split, output_tokens, 0, last, False)
    if len(token_chars) == output_tokens:
        index = next((i for i, c in enumerate(token_chars) if c >= split.boundary_char), output_tokens - 1)
        when = token_times_s[index] if len(token_times_s) == output_tokens else None
        return TokenSplit(split, index + 1, output_tokens - index - 1, when, False)
    share = split.boundary_char / text_len if text_len else 0.0
    count = min(output_tokens, max(1, round(output_tokens * share)))
    return TokenSplit(split, count, output_tokens - count, None, True)
