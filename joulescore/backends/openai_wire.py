"""What an OpenAI-compatible server sends, checked before it is believed.

A server can answer anything: a model list that is not one, stream events
that are not JSON objects, token counts that are null or negative.  Each
shape is checked here, so a misbehaving server gives a one-line error at
start or a failed prompt with its reason, never a traceback, and no invalid
count is ever stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from joulescore.errors import BadInput

MODEL_LIST_EXAMPLE = '{"data": [{"id": "NAME"}]}'


class BadStream(Exception):
    """A stream event the client cannot use: the prompt fails with this reason."""


def snippet(text: str, limit: int = 120) -> str:
    """Server text made fit for a one-line message: whitespace collapsed, cut short."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def model_ids(base: str, status: int, body: str) -> list[str]:
    """The ids in a GET /v1/models answer; anything but a non-empty OpenAI model list is a BadInput."""
    said = f"the server at {base} answered GET /v1/models with"
    if status != 200:
        raise BadInput(f"{said} HTTP {status} ({snippet(body) or 'no body'}); is it an OpenAI-compatible server?")
    try:
        listing = json.loads(body)
    except (ValueError, RecursionError):
        raise BadInput(f"{said} something that is not JSON ({snippet(body) or 'an empty body'}); "
                       f"is it an OpenAI-compatible server?") from None
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]
                                             for m in data):
        raise BadInput(f"{said} {snippet(body)}, which is not a model list like {MODEL_LIST_EXAMPLE}")
    if not data:
        raise BadInput(f"the server at {base} lists no models (GET /v1/models gave an empty list); "
                       f"load a model into it first")
    return [m["id"] for m in data]


@dataclass
class Event:
    """One stream event: the text pieces it carries (one token each), its finish reason and usage."""

    pieces: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] | None = None


def parse_event(data: str) -> Event:
    """A ``data:`` line's JSON as an Event; BadStream says what was wrong with it."""
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise BadStream(f"the server sent a stream event that is not JSON: {snippet(data)}") from None
    if not isinstance(chunk, dict):
        raise BadStream(f"the server sent a stream event that is not a JSON object: {snippet(data)}")
    if chunk.get("error") is not None:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise BadStream(f"the server reported an error mid-stream: {snippet(str(message or error))}")
    usage = chunk.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise BadStream(f"the server sent a usage report that is not an object: {snippet(json.dumps(usage))}")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise BadStream(f"the server sent choices that are not a list: {snippet(data)}")
    event = Event(usage=usage)
    for choice in choices:
        delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(delta, dict) or (content is not None and not isinstance(content, str)):
            raise BadStream(f"the server sent a choice that is not an OpenAI chat delta: {snippet(data)}")
        if content:
            event.pieces.append(content)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            event.finish = reason
    return event


def _count(value: object) -> int | None:
    """A token count as the server gave it, or None where it is not a count (null, negative, not an integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def token_counts(usage: dict[str, Any] | None, streamed: int) -> tuple[int, int, str | None]:
    """Input and output tokens, and why they are not the server's own where its report is invalid.

    Without a usage report each streamed chunk counts as one token (prompt tokens are then
    unknown, 0).  A report with a null, missing or negative count is not stored: the counts fall
    back the same way, and the reason becomes the row's error.
    """
    if usage is None:
        return 0, streamed, None
    n_in, n_out = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    if n_in is not None and n_out is not None:
        return n_in, n_out, None
    bad = ", ".join(f"{name}={json.dumps(usage[name]) if name in usage else 'missing'}"
                    for name, n in (("prompt_tokens", n_in), ("completion_tokens", n_out)) if n is None)
    out_note = f"{streamed} output tokens counted from the streamed chunks" if n_out is None \
        else f"{n_out} output tokens as reported"
    in_note = "0 input tokens (unknown)" if n_in is None else f"{n_in} input tokens as reported"
    return n_in or 0, streamed if n_out is None else n_out, (
        f"the server's usage report is invalid ({snippet(bad)}); stored {out_note} and {in_note}")
