"""A metered stream on its way to the client: events read as they pass, the request ended once, whatever happens.

A stream that ends without any choice giving a finish reason, or with no
content, was cut by the upstream (llama-cpp-python's ``--interrupt_requests``
does this to a stream when a newer request arrives): it is stored as
``upstream_cut`` with its energy, not as ok.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

from joulescore.proxy import streams
from joulescore.proxy.ledger import Ledger

if TYPE_CHECKING:
    from joulescore.proxy.outcome import Outcome


def why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Reading:
    """What the events of one stream said so far."""

    def __init__(self, rid: str, out: Outcome, ledger: Ledger) -> None:
        self.rid, self.out, self.ledger = rid, out, ledger
        self.chunks, self.finished = 0, False
        self.usage: dict[str, Any] | None = None

    def read(self, event: bytes) -> streams.EventInfo:
        info = streams.inspect_event(event)
        out = self.out
        if info.pieces and out.ttft_s is None:
            out.ttft_s = time.perf_counter() - out.started_s
            self.ledger.first_token(self.rid)
        self.chunks += info.pieces
        self.finished = self.finished or info.finished
        if out.model == streams.UNKNOWN and info.model:
            out.model = info.model
        self.usage = info.usage or self.usage
        return info

    def cut(self) -> str | None:
        """Why a stream that ended cleanly was cut short (None when it was not)."""
        if not self.finished:
            return "the upstream ended the stream without a finish reason"
        if not self.chunks:
            return "the upstream ended the stream with no content"
        return None


async def relay(ledger: Ledger, end: Callable[[str, Outcome], tuple[float, bool]], rid: str, out: Outcome,
                resp: httpx.Response, added_usage: bool, annotate: str | None) -> AsyncIterator[bytes]:
    """Forward the upstream's stream, reading each event; end the request when the stream ends or breaks."""
    splitter = streams.EventSplitter()
    seen = _Reading(rid, out, ledger)
    ended = False
    try:
        async for data in resp.aiter_bytes():
            for piece, readable in splitter.feed(data):
                info = seen.read(piece) if readable else None
                if info is not None and added_usage and info.usage_only:
                    continue  # the usage chunk the proxy asked for; the client did not
                yield piece
        rest = splitter.rest()
        if rest:
            yield rest
        ended = True
        cut = seen.cut()
        if cut is not None:
            out.status, out.error = "upstream_cut", cut
    except httpx.HTTPError as exc:
        out.status, out.http_status, out.error = "upstream_error", 502, f"upstream broke off the stream: {why(exc)}"
        yield (f"data: {json.dumps({'error': {'message': out.error, 'type': 'upstream_error', 'code': 502}})}"
               "\n\n").encode()
        ended = True
    finally:
        if not ended:
            out.status, out.error = "client_closed", "the stream was closed before it ended (the client went away, " \
                "or the proxy was stopped at once)"
        await resp.aclose()
        n_in, out.output_tokens, out.tokens_from, problem = streams.counts(seen.usage, seen.chunks)
        out.input_tokens = n_in
        if splitter.oversized:
            problem = problem or f"{splitter.oversized} stream events over {splitter.max_event} bytes passed on unread"
        out.error = out.error or problem
        energy_j, final = end(rid, out)
    if annotate is not None:
        yield streams.annotation(energy_j, annotate, final)
