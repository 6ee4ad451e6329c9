"""What a ``--precision`` run knows about every prompt before it starts: the tokens each one will prefill.

The regression estimator (:mod:`joulescore.bench.estimate`) needs the mean of its
covariate over all N prompts of the run.  The covariate is the input tokens the
engine prefills, which depends on the prefix cache, and so on which prompt came
before.  A sampled run answers the prompts in a shuffled order, but the figure
it estimates is the full run's: the N prompts answered in dataset order, after
the same warm-up.  So the population mean is computed for that order, with the
engine's own tokenizer and chat template, before the model answers anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from joulescore.backends.base import Backend, GenerationConfig
from joulescore.backends.reasoning import ReasoningPlan
from joulescore.bench.estimate import Population, row_covariate
from joulescore.bench.runner import plan_messages, with_plan
from joulescore.store.sqlite import ResultRow
from joulescore.tasks.spec import Prompt

#: what a sampled run's estimate refers to, as the record states it
REFERS_TO = ("J/query of the full run: all {n} prompts of this run answered in dataset order after the same "
             "warm-up (prefix-cache reuse predicted for that order)")


__all__ = ["REFERS_TO", "Population", "population_of", "row_x"]


def row_x(row: ResultRow) -> float:
    """A stored row's covariate: the input tokens the engine really prefilled (0 for a failed prompt)."""
    return row_covariate(row.ok, row.input_tokens, int(row.extra.get("cached_input_tokens", 0)))


def population_of(backend: Backend, prompts: Sequence[Prompt], config: GenerationConfig,
                  plan: ReasoningPlan | None, warmup: int) -> tuple[Population | None, str]:
    """The covariate's mean over the run's prompts in dataset order, or None and why (the plain mean is used)."""
    ordered = sorted(prompts, key=lambda p: p.index)
    lead = ordered[:warmup]  # a full run warms up on its first prompts: the cache then holds the last of them
    counts = backend.prefill_tokens([plan_messages(p, plan) for p in [*lead, *ordered]], with_plan(config, plan))
    if counts is None or not ordered:
        return None, (f"the {backend.name} backend cannot count a prompt's tokens before it runs, so the estimate "
                      "is the plain mean of the sampled prompts")
    own = counts[len(lead):]
    cached = backend.info().extra.get("prompt_cache")
    source = (f"the {backend.name} engine's tokenizer and chat template, before the run; "
              + ("less the prefix each prompt shares with the one before it in dataset order (the prefix cache)"
                 if cached else "every input token (no prefix cache)")
              + "; 0 for a prompt too long for the context window")
    return Population(len(own), sum(own) / len(own), source), ""
