"""How to decode: the settings a run hands every engine for each prompt.

A plain type below the engines, so the run's settings (``model/config.py``) can build it
without importing any engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode.  ``min_new_tokens == max_new_tokens`` forces a fixed length.

    ``template_kwargs`` and ``assistant_prefix`` carry a reasoning switch into
    the prompt (see ``model/reasoning.py``): extra chat-template variables such as
    ``enable_thinking``, and text forced at the start of the reply.
    """

    max_new_tokens: int
    min_new_tokens: int = 0
    temperature: float = 0.0
    seed: int = 0
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    assistant_prefix: str = ""
    #: keep special tokens in the text (Harmony's channel markers are special tokens)
    keep_special_tokens: bool = False
