"""What a metric reads (one answered prompt) and what it gives (the run's quality figure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Response:
    """What a metric sees of one answered prompt."""

    text: str
    output_tokens: int
    reference: Any = None
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Quality:
    """The quality figure recorded beside the energy."""

    metric: str
    value: float | None
    n: int
    higher_is_better: bool | None
    details: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
