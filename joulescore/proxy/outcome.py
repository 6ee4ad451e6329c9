"""A proxied request's outcome, in its own module: the app fills it, the relay and the session read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    """What the app knows of a request when it ends; stored then, its energy settled later if need be."""

    path: str
    model: str
    streamed: bool
    started_unix: float
    started_s: float
    status: str = "ok"
    http_status: int = 200
    input_tokens: int | None = None
    output_tokens: int = 0
    tokens_from: str = "chunks"
    ttft_s: float | None = None
    duration_s: float = 0.0
    error: str | None = None
