"""The runner: drives a backend under a meter over a task's prompts, storing as it goes.

It knows the Backend and Meter interfaces and nothing of any vendor.  The
meter is read at three moments per prompt (start, first token, end), so each
prompt's energy splits into prefill and decode and the pieces add up to the
run's total exactly.

With ``batch_size`` N > 1 and an engine that really batches, N prompts share
one window, read at start, first token (the batch is full), steady-state end
(the first row finished) and end.  The window's energy and time go to its
prompts by this rule: prefill by each prompt's share of the batch's input
tokens, decode by its share of the output tokens (evenly when a share's total
is zero), so per-prompt figures still add up to the run's total.  The batch's
rows are stored in one transaction: a batch counts once or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from joulescore.backends.base import Backend, Generation
from joulescore.backends.media import MediaBackend
from joulescore.bench.media import run_media_prompt
from joulescore.bench.row_parts import common_extra, energy_sums, keep_watched
from joulescore.meters.base import Meter, Reading, shares
from joulescore.meters.interference import InterferenceWatch
from joulescore.model.generation import GenerationConfig
from joulescore.model.reasoning import ReasoningPlan, split_text, split_tokens
from joulescore.store.rows import BatchWindow, ReasoningSplit
from joulescore.store.sqlite import ResultRow, Store
from joulescore.tasks.spec import Prompt


class ProgressSink(Protocol):
    """Where the runner reports each finished prompt (a rich progress bar, or nothing)."""

    def advance(self, result: ResultRow) -> None: ...


@dataclass
class RunOutcome:
    run_id: str
    attempted: int
    interrupted: bool
    #: a --precision run stopped before its last prompt: the interval was narrow enough
    stopped_early: bool = False


#: the longest wait for a scraped counter's sample past a prompt's end (a stale one is an error sooner)
SETTLE_WAIT_S = 300.0


def final(meter: Meter, *readings: Reading) -> list[Reading]:
    """The readings as final figures: a scraped counter's (Prometheus, an exporter) once it has a sample past
    the last of them, interpolated at each; a local counter's as read."""
    if meter.settled_until_s() < readings[-1].timestamp_s:
        meter.wait_settled(readings[-1].timestamp_s, SETTLE_WAIT_S)
    return [meter.revise(r) for r in readings]



def plan_messages(prompt: Prompt, plan: ReasoningPlan | None) -> list[dict[str, str]]:
    """The messages the model sees: the prompt with the reasoning switch applied."""
    return plan.apply(prompt.messages) if plan is not None else prompt.messages


def with_plan(config: GenerationConfig, plan: ReasoningPlan | None) -> GenerationConfig:
    """Decoding settings that carry the plan's switch into the prompt render."""
    if plan is None:
        return config
    return replace(config, template_kwargs=dict(plan.template_kwargs), assistant_prefix=plan.assistant_prefix,
                   keep_special_tokens=True)


def reasoning_extra(plan: ReasoningPlan, gen: Generation, first_s: float, end_s: float,
                    decode_j: float) -> tuple[str, ReasoningSplit]:
    """The answer section and the reasoning split of one response, decode energy divided at the boundary.

    Decode energy is split in proportion to decode *time* before and after the
    token that closed the reasoning (the meter is read only at first and last
    token, so power is taken as flat over the decode); prefill is neither.
    """
    split = split_text(gen.text, plan.split, gen.finish_reason, plan.starts_in_reasoning)
    ts = split_tokens(split, len(gen.text), gen.output_tokens, gen.token_chars, gen.token_times_s)
    span = end_s - first_s
    if ts.reasoning_tokens == 0:
        share = 0.0
    elif ts.answer_tokens == 0:
        share = 1.0
    elif ts.boundary_s is not None and span > 0:
        share = min(1.0, max(0.0, (ts.boundary_s - first_s) / span))
    else:  # no per-token times from this backend: split by tokens instead
        share = ts.reasoning_tokens / gen.output_tokens
    return split.answer if split.scored else "", ReasoningSplit(
        state=split.state,
        tokens=ts.reasoning_tokens,
        answer_tokens=ts.answer_tokens,
        tokens_estimated=ts.estimated,
        reasoning_j=decode_j * share,
        answer_j=decode_j * (1.0 - share),
        boundary_s=None if ts.boundary_s is None or ts.reasoning_tokens in (0, gen.output_tokens)
        else ts.boundary_s - first_s,
    )





def run_prompt(backend: Backend, meter: Meter, prompt: Prompt, config: GenerationConfig,
               plan: ReasoningPlan | None = None, watch: InterferenceWatch | None = None) -> ResultRow:
    """Answer one prompt under the meter and return its stored row."""
    if isinstance(backend, MediaBackend):  # a file per prompt: its decoding metered apart
        return run_media_prompt(backend, meter, prompt, config, watch)
    marks: list[Reading] = []
    messages = plan_messages(prompt, plan)
    config = with_plan(config, plan)
    if watch is not None:
        watch.begin()
    begin = meter.read()
    gen = backend.generate(messages, config, on_first_token=lambda: marks.append(meter.read()))
    end = meter.read()
    figures = watch.end() if watch is not None else {}
    # No token generated (an encoder's one forward pass, or an answer that never began): there is no
    # decode phase, so everything up to the end is prefill, not the moments after the hook fired.
    first = marks[0] if marks and gen.output_tokens else end
    begin, first, end = final(meter, begin, first, end)
    window = meter.measurement(begin, end)
    e0, l0, h0 = energy_sums(begin)
    e1, _, _ = energy_sums(first)
    e2, l2, h2 = energy_sums(end)
    extra = common_extra(prompt, gen)
    if plan is not None and gen.ok:
        extra.answer, extra.reasoning = reasoning_extra(plan, gen, first.timestamp_s, end.timestamp_s, e2 - e1)
    keep_watched(extra, window, figures)
    return ResultRow(
        prompt_index=prompt.index,
        prompt_id=prompt.id,
        ok=gen.ok,
        error=gen.error,
        finish_reason=gen.finish_reason,
        input_tokens=gen.input_tokens,
        output_tokens=gen.output_tokens,
        prefill_s=first.timestamp_s - begin.timestamp_s,
        decode_s=end.timestamp_s - first.timestamp_s,
        prefill_j=e1 - e0,
        decode_j=e2 - e1,
        low_j=l2 - l0,
        high_j=h2 - h0,
        domains={d.value: v for d, v in window.energy_j.items()},
        text=gen.text,
        extra=extra,
    )


def run_batch(backend: Backend, meter: Meter, prompts: Sequence[Prompt], config: GenerationConfig,
              batch_id: int, plan: ReasoningPlan | None = None,
              watch: InterferenceWatch | None = None) -> list[ResultRow]:
    """Answer a batch together under one meter window, and split it into per-prompt rows.

    A reasoning plan's switch is applied to every prompt; the reasoning/answer
    energy split is made only for prompts answered one at a time.
    """
    config = with_plan(config, plan)
    marks: dict[str, Reading] = {}
    steady_tokens: list[int] = []

    def first() -> None:
        marks.setdefault("first", meter.read())

    def steady_end(tokens: int) -> None:
        if "steady" not in marks:
            marks["steady"] = meter.read()
            steady_tokens.append(tokens)

    if watch is not None:
        watch.begin()
    begin = meter.read()
    gens = backend.generate_batch([plan_messages(p, plan) for p in prompts], config, first, steady_end)
    end = meter.read()
    figures = watch.end() if watch is not None else {}
    first_r = marks.get("first", end) if any(g.output_tokens for g in gens) else end  # no token: all prefill
    begin, first_r, *steady, end = final(meter, begin, first_r, *([marks["steady"]] if "steady" in marks else []), end)
    window = meter.measurement(begin, end)
    e0, l0, h0 = energy_sums(begin)
    e1, _, _ = energy_sums(first_r)
    e2, l2, h2 = energy_sums(end)
    pre_j, dec_j, total_j = e1 - e0, e2 - e1, e2 - e0
    pre_s, dec_s = first_r.timestamp_s - begin.timestamp_s, end.timestamp_s - first_r.timestamp_s
    w_in = shares([g.input_tokens for g in gens])
    w_out = shares([g.output_tokens for g in gens])
    batch = BatchWindow(id=batch_id, size=len(prompts), window_s=end.timestamp_s - begin.timestamp_s)
    if steady and "first" in marks:
        s_end = steady[0]
        batch.steady_j = energy_sums(s_end)[0] - e1
        batch.steady_s, batch.steady_tokens = s_end.timestamp_s - first_r.timestamp_s, steady_tokens[0]
    rows = []
    for prompt, gen, a, b in zip(prompts, gens, w_in, w_out):
        row_j = pre_j * a + dec_j * b
        share = row_j / total_j if total_j else 1.0 / len(prompts)
        extra = common_extra(prompt, gen, ttft_s=gen.prefill_s, latency_s=gen.prefill_s + gen.decode_s, batch=batch)
        keep_watched(extra, window, figures, 1.0 / len(prompts))
        rows.append(ResultRow(
            prompt_index=prompt.index, prompt_id=prompt.id, ok=gen.ok, error=gen.error,
            finish_reason=gen.finish_reason, input_tokens=gen.input_tokens, output_tokens=gen.output_tokens,
            prefill_s=pre_s * a, decode_s=dec_s * b, prefill_j=pre_j * a, decode_j=dec_j * b,
            low_j=(l2 - l0) * share, high_j=(h2 - h0) * share,
            domains={d.value: v * share for d, v in window.energy_j.items()}, text=gen.text, extra=extra,
        ))
    return rows


def batches_of(prompts: Sequence[Prompt], size: int) -> list[list[Prompt]]:
    items = list(prompts)
    return [items[i:i + size] for i in range(0, len(items), size)]


def really_batches(backend: Backend, batch_size: int) -> bool:
    """Whether prompts go through the engine together (else one by one, attributed exactly)."""
    return batch_size > 1 and backend.batching != "sequential"


#: asked between prompts whether to stop (a Ctrl-C whose KeyboardInterrupt an engine swallowed)
StopCheck = Callable[[], bool]


def _check(stop: StopCheck | None) -> None:
    if stop is not None and stop():
        raise KeyboardInterrupt


def warm_up(backend: Backend, prompts: Sequence[Prompt], config: GenerationConfig, count: int,
            plan: ReasoningPlan | None = None, batch_size: int = 1, stop: StopCheck | None = None) -> None:
    """Run prompts that are not counted, so caches and clocks settle before measuring."""
    config = with_plan(config, plan)
    if really_batches(backend, batch_size):
        for group in batches_of(list(prompts)[:count], batch_size):
            _check(stop)
            backend.generate_batch([plan_messages(p, plan) for p in group], config)
        return
    for prompt in list(prompts)[:count]:
        _check(stop)
        backend.generate(plan_messages(prompt, plan), config)


def run_pending(
    store: Store,
    run_id: str,
    backend: Backend,
    meter: Meter,
    prompts: Sequence[Prompt],
    config: GenerationConfig,
    progress: ProgressSink | None = None,
    after_each: Callable[[ResultRow], None] | None = None,
    plan: ReasoningPlan | None = None,
    batch_size: int = 1,
    stop: StopCheck | None = None,
    watch: InterferenceWatch | None = None,
    enough: StopCheck | None = None,
) -> RunOutcome:
    """Answer every prompt of the run that has no stored result yet, in the order given.

    Ctrl-C stops after storing what finished; the prompt in flight is dropped
    and is answered again by ``--resume``.  ``stop`` is asked before each prompt.
    ``enough`` too (a ``--precision`` run): when it says so, the run ends early.
    ``watch`` records what else used the machine in each prompt's window.
    """
    done = store.done_indices(run_id)
    pending = [p for p in prompts if p.index not in done]
    attempted = 0
    meter.start()
    if watch is not None:
        watch.start()
    try:
        batched = really_batches(backend, batch_size)
        for group in batches_of(pending, batch_size if batched else 1):
            _check(stop)
            if enough is not None and enough():
                return RunOutcome(run_id, attempted, interrupted=False, stopped_early=True)
            if batched:
                results = run_batch(backend, meter, group, config, batch_id=group[0].index, plan=plan, watch=watch)
                store.add_results(run_id, results)
            else:
                results = [run_prompt(backend, meter, group[0], config, plan, watch)]
                store.add_result(run_id, results[0])
            for result in results:
                attempted += 1
                if progress is not None:
                    progress.advance(result)
                if after_each is not None:
                    after_each(result)
    except KeyboardInterrupt:
        return RunOutcome(run_id, attempted, interrupted=True)
    finally:
        if watch is not None:
            watch.stop()
        meter.stop()
    return RunOutcome(run_id, attempted, interrupted=False)

