"""What the proxy reads from an OpenAI answer on its way through: tokens, usage, the first token.

The bytes themselves are forwarded as they came.  A stream is cut into its
server-sent events (blank-line separated) only to look inside each one; the
one event the proxy may hold back is the usage-only chunk it asked for itself
(``stream_options.include_usage``), which the client did not ask for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from joulescore.backends.openai_wire import token_counts


@dataclass
class EventInfo:
    pieces: int = 0
    usage: dict[str, Any] | None = None
    #: a chunk with usage and no choices: the extra chunk ``include_usage`` adds
    usage_only: bool = False
    model: str | None = None


def _pieces(choices: object) -> int:
    """Choices carrying generated text: a chat delta's content or a completion's text."""
    if not isinstance(choices, list):
        return 0
    n = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(text, str) and text:
            n += 1
    return n


def inspect_event(event: bytes) -> EventInfo:
    """Tokens and usage in one server-sent event; anything unreadable counts as nothing."""
    info = EventInfo()
    for line in event.splitlines():
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            continue
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            continue
        if not isinstance(chunk, dict):
            continue
        info.pieces += _pieces(chunk.get("choices"))
        info.model = info.model or _model(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            info.usage = usage
            info.usage_only = not chunk.get("choices")
    return info


class EventSplitter:
    """Bytes in, whole events out (each with its separator), whatever the chunking."""

    SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        events: list[bytes] = []
        while True:
            cuts = [(i, len(s)) for s in self.SEPARATORS if (i := self._buf.find(s)) >= 0]
            if not cuts:
                return events
            i, n = min(cuts)
            events.append(self._buf[:i + n])
            self._buf = self._buf[i + n:]

    def rest(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


def _model(doc: object) -> str | None:
    model = doc.get("model") if isinstance(doc, dict) else None
    return model if isinstance(model, str) and model else None


def read_body(content: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The usage report of a non-streamed answer and the model it names, where it has them."""
    try:
        doc = json.loads(content)
    except (ValueError, RecursionError):
        return None, None
    usage = doc.get("usage") if isinstance(doc, dict) else None
    return (usage if isinstance(usage, dict) else None), _model(doc)


def counts(usage: dict[str, Any] | None, chunks: int) -> tuple[int | None, int, str, str | None]:
    """Input tokens (None when unknown), output tokens, where they came from, and why a report was refused."""
    if usage is None:
        return None, chunks, "chunks", None
    n_in, n_out, problem = token_counts(usage, chunks)
    if problem:
        return None, n_out, "chunks", problem
    return n_in, n_out, "usage", None


def annotation(energy_j: float, meter: str, final: bool) -> bytes:
    """The closing SSE comment of an ``--annotate`` stream: ignored by every SSE parser."""
    return f": joulescore energy_j={energy_j:.6g} meter={meter} final={str(final).lower()}\n\n".encode()


def wants_usage(doc: dict[str, Any]) -> bool:
    """Ask a stream's upstream for a usage chunk; True when the client did not ask for one itself."""
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True
