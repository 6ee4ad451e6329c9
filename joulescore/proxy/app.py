"""The proxy's ASGI app (starlette): OpenAI requests forwarded with httpx, metered on the way.

``/v1/chat/completions`` and ``/v1/completions`` are metered; everything else
is passed through unchanged.  Headers the proxy does not own pass through
untouched (hop-by-hop ones excepted, as HTTP requires); with ``--api-key`` the
``Authorization`` header is the proxy's and is not forwarded.  Nothing is
retried: a request that reached the upstream may have been acted on.  Prompt
text and keys are never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from joulescore.proxy import streams
from joulescore.proxy.ledger import Ledger
from joulescore.proxy.metrics import CONTENT_TYPE, ProxyMetrics

METERED = ("/v1/chat/completions", "/v1/completions")
#: hop-by-hop headers (RFC 9110 7.6.1) and those the transport recomputes
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length"}
#: the model of a request that names none, until the answer names it
UNKNOWN = "unknown"
ENERGY_HEADER, METER_HEADER = "x-joulescore-energy-j", "x-joulescore-meter"


@dataclass
class Outcome:
    """What the app knows of a request when it ends; stored once its energy is final."""

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


class _ClosingStream(StreamingResponse):
    """Closes its body generator when sending stops for any reason, so a client that went away is
    seen at once (the generator's ``finally``), not whenever the generator is collected."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Proxy:
    def __init__(self, upstream: str, ledger: Ledger, metrics: ProxyMetrics, on_outcome: Callable[[str, Outcome], None],
                 api_key: str | None = None, annotate: bool = False, timeout_s: float = 600.0) -> None:
        self.ledger, self.metrics, self.on_outcome = ledger, metrics, on_outcome
        self.api_key, self.annotate = api_key, annotate
        self.client = httpx.AsyncClient(base_url=upstream.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=5.0),
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        routes = [Route("/metrics", self.metrics_page, methods=["GET"]),
                  *(Route(p, self.metered, methods=["POST"]) for p in METERED),
                  Route("/{path:path}", self.passthrough,
                        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])]
        self.app = Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.client.aclose()

    # the proxy's own -------------------------------------------------------
    def _refused(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return None
        return _error(401, "missing or wrong bearer token (the proxy was started with --api-key)",
                      "invalid_api_key")

    def _headers(self, request: Request, keep_length: bool = False) -> list[tuple[str, str]]:
        drop = _HOP | ({"authorization"} if self.api_key is not None else set())
        if keep_length:  # the body is streamed on as it came: its length stands, no chunking
            drop = drop - {"content-length"}
        return [(k, v) for k, v in request.headers.items() if k.lower() not in drop]

    @staticmethod
    def _response_headers(resp: httpx.Response, decoded: bool) -> dict[str, str]:
        drop = _HOP | ({"content-encoding"} if decoded else set())
        return {k: v for k, v in resp.headers.items() if k.lower() not in drop}

    async def metrics_page(self, request: Request) -> Response:
        return self._refused(request) or Response(self.metrics.render(), media_type=CONTENT_TYPE)

    # pass-through --------------------------------------------------------------
    async def passthrough(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        req = self.client.build_request(request.method, request.url.path, params=request.url.query,
                                        headers=self._headers(request, keep_length=True), content=request.stream())
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.HTTPError as exc:
            return _error(502, f"upstream unreachable: {_why(exc)}", "upstream_error")
        return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code,
                                 headers=self._response_headers(resp, decoded=False),
                                 background=BackgroundTask(resp.aclose))

    # metered ----------------------------------------------------------------------
    async def metered(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.body()
        try:
            doc: Any = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        streamed = isinstance(doc, dict) and doc.get("stream") is True
        model = doc.get("model") if isinstance(doc, dict) else None
        added_usage = False
        if streamed and isinstance(doc, dict):
            added_usage = streams.wants_usage(doc)
            body = json.dumps(doc).encode()
        rid = uuid.uuid4().hex
        out = Outcome(request.url.path, model if isinstance(model, str) and model else UNKNOWN, streamed,
                      time.time(), time.perf_counter())
        headers = [(k, v) for k, v in self._headers(request) if k.lower() != "accept-encoding"]
        req = self.client.build_request("POST", request.url.path, params=request.url.query,
                                        headers=headers, content=body)
        self.ledger.start(rid, streamed)
        self.metrics.in_flight.inc()
        try:
            resp = await self.client.send(req, stream=True)
        except BaseException as exc:  # unreachable, or cancelled before the upstream answered
            out.status, out.http_status, out.error = "upstream_error", 502, f"upstream unreachable: {_why(exc)}"
            self._end(rid, out)
            if isinstance(exc, httpx.HTTPError):
                return _error(502, out.error, "upstream_error")
            raise
        out.http_status = resp.status_code
        if streamed and resp.status_code == 200:
            return _ClosingStream(self._relay(rid, out, resp, added_usage), status_code=200,
                                  headers=self._response_headers(resp, decoded=True))
        return await self._whole(rid, out, resp)

    async def _whole(self, rid: str, out: Outcome, resp: httpx.Response) -> Response:
        try:
            content = await resp.aread()
        except httpx.HTTPError as exc:
            out.status, out.http_status, out.error = "upstream_error", 502, f"upstream broke off: {_why(exc)}"
            self._end(rid, out)
            return _error(502, out.error, "upstream_error")
        finally:
            await resp.aclose()
        if resp.status_code != 200:
            out.status = "http_error"
        usage, model = streams.read_body(content) if resp.status_code == 200 else (None, None)
        out.model = out.model if out.model != UNKNOWN else model or UNKNOWN
        out.input_tokens, out.output_tokens, out.tokens_from, out.error = streams.counts(usage, 0)
        energy_j, final = self._end(rid, out)
        headers = self._response_headers(resp, decoded=True) | self._cost(rid, energy_j, final)
        return Response(content, status_code=resp.status_code, headers=headers)

    async def _relay(self, rid: str, out: Outcome, resp: httpx.Response, added_usage: bool) -> AsyncIterator[bytes]:
        splitter = streams.EventSplitter()
        chunks, usage, finished = 0, None, False
        try:
            async for data in resp.aiter_bytes():
                for event in splitter.feed(data):
                    info = streams.inspect_event(event)
                    if info.pieces and out.ttft_s is None:
                        out.ttft_s = time.perf_counter() - out.started_s
                        self.ledger.first_token(rid)
                    chunks += info.pieces
                    if out.model == UNKNOWN and info.model:
                        out.model = info.model
                    usage = info.usage or usage
                    if not (added_usage and info.usage_only):
                        yield event
            rest = splitter.rest()
            if rest:
                yield rest
            finished = True
        except httpx.HTTPError as exc:
            out.status, out.http_status, out.error = "upstream_error", 502, f"upstream broke off the stream: {_why(exc)}"
            yield (f"data: {json.dumps({'error': {'message': out.error, 'type': 'upstream_error', 'code': 502}})}"
                   "\n\n").encode()
            finished = True
        finally:
            if not finished:
                out.status, out.error = "client_closed", "the client went away before the stream ended"
            await resp.aclose()
            n_in, out.output_tokens, out.tokens_from, problem = streams.counts(usage, chunks)
            out.input_tokens, out.error = n_in, out.error or problem
            energy_j, final = self._end(rid, out)
        if self.annotate:
            yield streams.annotation(energy_j, self.metrics.kind, final)

    def _end(self, rid: str, out: Outcome) -> tuple[float, bool]:
        out.duration_s = time.perf_counter() - out.started_s
        self.metrics.in_flight.dec()
        self.on_outcome(rid, out)  # before the ledger ends it: its settlement may store it at once
        return self.ledger.end(rid, out.input_tokens or 0, out.output_tokens)

    def _cost(self, rid: str, energy_j: float, final: bool) -> dict[str, str]:
        return {ENERGY_HEADER: f"{energy_j:.6g}", METER_HEADER: self.metrics.kind,
                "x-joulescore-energy-final": str(final).lower(), "x-joulescore-request-id": rid}
