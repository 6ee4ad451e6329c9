"""The runner: drives a backend under a meter over a task's prompts, storing as it goes.

It knows the Backend and Meter interfaces and nothing of any vendor.  The
meter is read at three moments per prompt (start, first token, end), so each
prompt's energy splits into prefill and decode and the pieces add up to the
run's total exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joulescore.backends.base import Backend, GenerationConfig
from joulescore.meters.base import Meter, Reading
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


def _sum(reading: Reading) -> tuple[float, float, float]:
    return sum(reading.energy_j.values()), sum(reading.low_j.values()), sum(reading.high_j.values())


def run_prompt(backend: Backend, meter: Meter, prompt: Prompt, config: GenerationConfig) -> ResultRow:
    """Answer one prompt under the meter and return its stored row."""
    marks: list[Reading] = []
    begin = meter.read()
    gen = backend.generate(prompt.messages, config, on_first_token=lambda: marks.append(meter.read()))
    end = meter.read()
    first = marks[0] if marks else end  # no token at all: everything was prefill
    window = meter.measurement(begin, end)
    e0, l0, h0 = _sum(begin)
    e1, _, _ = _sum(first)
    e2, l2, h2 = _sum(end)
    extra: dict[str, Any] = {}
    if prompt.reference is not None:
        extra["reference"] = prompt.reference
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


def warm_up(backend: Backend, prompts: Sequence[Prompt], config: GenerationConfig, count: int) -> None:
    """Run prompts that are not counted, so caches and clocks settle before measuring."""
    for prompt in list(prompts)[:count]:
        backend.generate(prompt.messages, config)


def run_pending(
    store: Store,
    run_id: str,
    backend: Backend,
    meter: Meter,
    prompts: Sequence[Prompt],
    config: GenerationConfig,
    progress: ProgressSink | None = None,
    after_each: Callable[[ResultRow], None] | None = None,
) -> RunOutcome:
    """Answer every prompt of the run that has no stored result yet.

    Ctrl-C stops after storing what finished; the prompt in flight is dropped
    and is answered again by ``--resume``.
    """
    done = store.done_indices(run_id)
    pending = [p for p in prompts if p.index not in done]
    attempted = 0
    meter.start()
    try:
        for prompt in pending:
            result = run_prompt(backend, meter, prompt, config)
            store.add_result(run_id, result)
            attempted += 1
            if progress is not None:
                progress.advance(result)
            if after_each is not None:
                after_each(result)
    except KeyboardInterrupt:
        return RunOutcome(run_id, attempted, interrupted=True)
    finally:
        meter.stop()
    return RunOutcome(run_id, attempted, interrupted=False)

