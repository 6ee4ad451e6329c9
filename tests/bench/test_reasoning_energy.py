"""The runner splits decode energy at the reasoning boundary, and the record adds it all up."""

from __future__ import annotations

import pytest

from joulescore.backends.base import Backend, FirstTokenHook, Generation
from joulescore.bench.runner import run_prompt
from joulescore.meters.base import Domain, Meter, Provenance, Reading
from joulescore.model.generation import GenerationConfig
from joulescore.model.reasoning import plan_reasoning
from joulescore.model.sections import ModelInfo
from joulescore.store.record import build_record
from joulescore.store.sqlite import RunRow
from joulescore.tasks.spec import Prompt

POWER_W = 20.0


class Clock:
    """A fake clock, so energy (power x time) and token times are exact."""

    def __init__(self) -> None:
        self.now_s = 100.0


class FlatMeter(Meter):
    """A meter at constant power on the fake clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def provenance(self) -> Provenance:
        return Provenance("measured", ("fake",), ("cpu",), 0.0)

    def read(self) -> Reading:
        e = {Domain.CPU: POWER_W * self.clock.now_s}
        return Reading(self.clock.now_s, e, dict(e), dict(e))


class ScriptedBackend(Backend):
    """Emits fixed token pieces, one per second after a two-second prefill; records what it was asked."""

    def __init__(self, clock: Clock, pieces: list[str], finish: str) -> None:
        self.clock, self.pieces, self.finish = clock, pieces, finish
        self.seen: list[tuple[list[dict[str, str]], GenerationConfig]] = []

    def info(self) -> ModelInfo:
        return ModelInfo("scripted", None, "fake", None)

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        self.seen.append((messages, config))
        start = self.clock.now_s
        self.clock.now_s += 2.0
        if on_first_token:
            on_first_token()
        first = self.clock.now_s
        times, chars, n = [], [], 0
        for piece in self.pieces:
            self.clock.now_s += 1.0
            times.append(self.clock.now_s)
            n += len(piece)
            chars.append(n)
        return Generation("".join(self.pieces), 9, len(self.pieces), first - start, self.clock.now_s - first,
                          self.finish, token_times_s=times, token_chars=chars)


def _run(pieces: list[str], finish: str, family: str, mode: str = "on", reference: str = "42"):
    clock = Clock()
    backend = ScriptedBackend(clock, pieces, finish)
    plan = plan_reasoning(mode, family, len(pieces))
    prompt = Prompt(0, "q0", [{"role": "user", "content": "6*7?"}], reference)
    row = run_prompt(backend, FlatMeter(clock), prompt, GenerationConfig(len(pieces)), plan)
    return row, backend


def test_decode_energy_splits_at_the_token_that_closed_the_reasoning() -> None:
    # 4 reasoning tokens (the last closes </think>), then 2 answer tokens; 1 s each at 20 W.
    row, backend = _run(["<think>", "6*7", " is 42", "</think>", "\n\n", "42"], "stop", "qwen3")
    r = row.extra.reasoning
    assert r is not None and (r.state, r.tokens, r.answer_tokens) == ("closed", 4, 2)
    assert row.prefill_j == pytest.approx(2 * POWER_W)
    assert r.reasoning_j == pytest.approx(4 * POWER_W) and r.answer_j == pytest.approx(2 * POWER_W)
    assert r.reasoning_j + r.answer_j == pytest.approx(row.decode_j)
    assert row.extra.answer == "42"
    messages, config = backend.seen[0]
    assert config.template_kwargs == {"enable_thinking": True} and config.keep_special_tokens


def test_prompted_reasoning_reaches_the_backend_as_a_system_instruction() -> None:
    row, backend = _run(["7+7+7+7+7+7", " = 42.", "\nFinal answer:", " 42"], "stop", "none")
    messages, config = backend.seen[0]
    assert messages[0]["role"] == "system" and "Final answer" in messages[0]["content"]
    assert config.template_kwargs == {}
    assert row.extra.reasoning is not None and row.extra.reasoning.tokens == 3 and row.extra.answer == "42"


def test_record_counts_truncated_reasoning_and_does_not_score_it() -> None:
    rows = []
    for i, (pieces, finish) in enumerate([
        (["<think>", "6*7", " is 42", "</think>", "42"], "stop"),   # right, closed
        (["<think>", "so", " it is", " 42"], "length"),              # cut off mid-thought, holds "42"
        (["<think>", "hmm", "</think>", "41"], "stop"),              # wrong, closed
    ]):
        row, _ = _run(pieces, finish, "qwen3")
        row.prompt_index, row.prompt_id = i, f"q{i}"
        rows.append(row)
    plan = plan_reasoning("on", "qwen3", 8)
    spec = {"config": {"reasoning": "on", "max_new_tokens": 8}, "reasoning": plan.as_dict(),
            "model": {"name": "m", "backend": "fake"}, "task": {"name": "reasoning", "metric": "final_number"},
            "hardware": {}, "meter": {"kind": "measured"}}
    run = RunRow("r1", "t", "t", "complete", 3, None, None, spec, None)
    record = build_record(run, rows, "test").as_json()
    counts, energy = record["counts"], record["energy"]
    assert record["config"]["reasoning"]["family"] == "qwen3"
    assert (counts["reasoning_tokens"], counts["answer_tokens"]) == (4 + 4 + 3, 1 + 0 + 1)
    assert counts["reasoning_truncated"] == 1 and counts["truncated"] == 1
    assert counts["reasoning_tokens_per_query"]["max"] == 4.0
    assert energy["reasoning_j"] + energy["answer_j"] == pytest.approx(energy["decode_j"])
    assert record["quality"]["value"] == pytest.approx(1 / 3)  # the truncated "42" is not an answer
    assert record["quality"]["details"]["empty_answers"] == 1.0
    assert set(energy["per_query_j"]) == {"p50", "p90", "p99", "max"}


def test_a_run_without_a_reasoning_mode_is_unchanged() -> None:
    clock = Clock()
    backend = ScriptedBackend(clock, ["<think>", "x", "</think>", "42"], "stop")
    row = run_prompt(backend, FlatMeter(clock), Prompt(0, "q", [{"role": "user", "content": "hi"}]),
                     GenerationConfig(4))
    assert row.extra.reasoning is None and row.extra.answer is None
    assert "reasoning" not in row.extra.as_json() and "answer" not in row.extra.as_json()
    assert backend.seen[0][1].template_kwargs == {} and not backend.seen[0][1].keep_special_tokens


def test_family_is_detected_from_the_backend_or_overridden() -> None:
    from joulescore.bench.session import reasoning_plan
    from joulescore.model.config import RunConfig

    class Qwen3Like(ScriptedBackend):
        def chat_template(self) -> str | None:
            return "{% if enable_thinking is false %}<think>\n\n</think>{% endif %}"

    backend = Qwen3Like(Clock(), ["x"], "stop")
    config = RunConfig(model="m", task="reasoning", protocol="natural", max_new_tokens=64, reasoning="off")
    plan, source = reasoning_plan(config, backend)
    assert (plan.family, plan.method, plan.budget, source) == ("qwen3", "native", 64, "detected")
    assert plan.template_kwargs == {"enable_thinking": False}
    forced, source = reasoning_plan(config.model_copy(update={"reasoning_family": "none"}), backend)
    assert (forced.family, forced.method, source) == ("none", "prompted", "override")
    assert reasoning_plan(config.model_copy(update={"reasoning": None}), backend) == (None, None)
