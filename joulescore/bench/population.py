"""What a ``--precision`` run knows about every prompt before it starts: the tokens each one will prefill.

The regression estimator (:mod:`joulescore.store.estimate`) needs the mean of its
covariate over all N prompts of the run.  The covariate is the input tokens the
engine prefills, which depends on the prefix cache, and so on which prompt came
before.  A sampled run answers the prompts in a shuffled order, but the figure
it estimates is the full run's: the N prompts answered in dataset order, after
the same warm-up.  So the population mean is computed for that order, with the
engine's own tokenizer and chat template, before the model answers anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from joulescore.backends.base import Backend
from joulescore.bench.runner import plan_messages, with_plan
from joulescore.model.generation import GenerationConfig
from joulescore.model.reasoning import ReasoningPlan
from joulescore.store.estimate import Population
from joulescore.tasks.spec import Prompt


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
