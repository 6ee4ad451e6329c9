"""What the proxy reads from an OpenAI answer on its way through: tokens, usage, the first token, the end.

The bytes themselves are forwarded as they came.  A stream is cut into its
server-sent events (blank-line separated) only to look inside each one; the
one event the proxy may hold back is the usage-only chunk it asked for itself
(``stream_options.include_usage``), which the client did not ask for.  Cutting
is linear in the bytes, and an event larger than ``MAX_EVENT_BYTES`` is passed
on unread as it arrives, so one huge event neither stalls the proxy nor fills
its memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from joulescore.backends.openai_wire import token_counts
from joulescore.proxy.checks import MAX_TOKENS, text_problem

#: a stream event the proxy reads; a bigger one passes through unread (an answer's chunk is a few hundred bytes)
MAX_EVENT_BYTES = 1 << 20
#: the model of a request that names none, until the answer names it
UNKNOWN = "unknown"
_SEPARATOR = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass
class EventInfo:
    pieces: int = 0
    usage: dict[str, Any] | None = None
    #: a chunk with usage and no choices: the extra chunk ``include_usage`` adds
    usage_only: bool = False
    model: str | None = None
    #: a choice said why it ended ("stop", "length", ...): the stream was not cut
    finished: bool = False


def _pieces(choices: list[Any]) -> int:
    """Choices carrying generated text: a chat delta's content or a completion's text."""
    n = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(text, str) and text:
            n += 1
    return n


def _finished(choices: list[Any]) -> bool:
    return any(isinstance(c, dict) and isinstance(c.get("finish_reason"), str) and c["finish_reason"]
               for c in choices)


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
        choices = chunk.get("choices")
        if isinstance(choices, list):
            info.pieces += _pieces(choices)
            info.finished = info.finished or _finished(choices)
        info.model = info.model or _model(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            info.usage = usage
            info.usage_only = not chunk.get("choices")
    return info


class EventSplitter:
    """Bytes in, pieces out: ``(bytes, True)`` for a whole event (with its separator) to read,
    ``(bytes, False)`` for bytes of an oversized event, forwarded unread.

    Each byte is scanned a bounded number of times (the scan resumes where it stopped), so a
    32 MB event costs one pass, not one pass per chunk it arrived in.
    """

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no separator start (but the last 3)
        self._skipping = False  # inside an oversized event: pass bytes on until its end
        self.max_event = max_event
        self.oversized = 0

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        self._buf += data
        pieces: list[tuple[bytes, bool]] = []
        start = 0
        while (m := _SEPARATOR.search(self._buf, max(start, self._scanned - 3))) is not None:
            pieces.append((bytes(self._buf[start:m.end()]), not self._skipping))
            self._skipping, start = False, m.end()
        del self._buf[:start]
        self._scanned = len(self._buf)
        if len(self._buf) > self.max_event or (self._skipping and len(self._buf) > 3):
            if not self._skipping:
                self.oversized += 1
            keep = 3  # a separator may straddle this chunk and the next
            pieces.append((bytes(self._buf[:-keep]), False))
            del self._buf[:-keep]
            self._skipping, self._scanned = True, len(self._buf)
        return pieces

    def rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return rest


def _model(doc: object) -> str | None:
    model = doc.get("model") if isinstance(doc, dict) else None
    return model if isinstance(model, str) and model and text_problem(model) is None else None


def read_body(content: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The usage report of a non-streamed answer and the model it names, where it has them."""
    try:
        doc = json.loads(content)
    except (ValueError, RecursionError):
        return None, None
    usage = doc.get("usage") if isinstance(doc, dict) else None
    return (usage if isinstance(usage, dict) else None), _model(doc)


def _out_of_range(usage: dict[str, Any]) -> list[str]:
    return [f"{name}={str(v)[:40]}" for name in ("prompt_tokens", "completion_tokens")
            if isinstance(v := usage.get(name), int) and not isinstance(v, bool) and v > MAX_TOKENS]


def counts(usage: dict[str, Any] | None, chunks: int) -> tuple[int | None, int, str, str | None]:
    """Input tokens (None when unknown), output tokens, where they came from, and why a report was refused.

    A count beyond ``MAX_TOKENS`` is refused like a negative one: it would overflow SQLite's integers
    and the token counters, and no context window comes near it.
    """
    if usage is None:
        return None, chunks, "chunks", None
    huge = _out_of_range(usage)
    if huge:
        return None, chunks, "chunks", (f"the server's usage report is out of range ({', '.join(huge)}, more than "
                                        f"{MAX_TOKENS}); stored {chunks} output tokens counted from the streamed "
                                        "chunks and unknown input tokens")
    n_in, n_out, problem = token_counts(usage, chunks)
    if problem:
        return None, n_out, "chunks", problem
    return n_in, n_out, "usage", None


def annotation(energy_j: float, meter: str, final: bool) -> bytes:
    """The closing SSE comment of an ``--annotate`` stream: ignored by every SSE parser."""
    return f": joulescore energy_j={energy_j:.6g} meter={meter} final={str(final).lower()}\n\n".encode()
