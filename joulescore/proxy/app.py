"""The proxy's ASGI app (starlette): OpenAI requests forwarded with httpx, metered on the way.

``/v1/chat/completions`` and ``/v1/completions`` are metered; everything else
is passed through unchanged.  A path that is not canonical (``..``, ``//``,
encoded dots or slashes) is refused before routing, auth and metering, so no
spelling of a metered path reaches the upstream unmetered.  Headers the proxy
does not own pass through untouched (hop-by-hop ones excepted, as HTTP
requires); with ``--api-key`` the ``Authorization`` header is the proxy's and
is not forwarded.  Bodies are forwarded as received (a stream may get
``stream_options`` spliced in), up to ``--max-body`` bytes.  Nothing is
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
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from joulescore.proxy import streams
from joulescore.proxy.checks import DEFAULT_MAX_BODY, MAX_MODEL_CHARS, path_problem, text_problem, with_usage
from joulescore.proxy.ledger import Ledger
from joulescore.proxy.metrics import CONTENT_TYPE, ProxyMetrics
from joulescore.proxy.outcome import Outcome
from joulescore.proxy.relay import relay, why
from joulescore.proxy.streams import UNKNOWN

METERED = ("/v1/chat/completions", "/v1/completions")
#: hop-by-hop headers (RFC 9110 7.6.1) and those the transport recomputes
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length"}
ENERGY_HEADER, METER_HEADER = "x-joulescore-energy-j", "x-joulescore-meter"


class TooLarge(Exception):
    """A request body over ``--max-body``."""


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


class Canonical:
    """Refuses a non-canonical path with 400 before anything else sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            problem = path_problem(scope.get("raw_path") or path.encode(), path)
            if problem is None and path.rstrip("/") in METERED and path not in METERED:
                problem = "a metered path has no trailing slash"
            if problem is not None:
                await _error(400, f"path refused: {problem}", "invalid_request_error")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _raw_path(request: Request) -> str:
    """The path exactly as the client sent it (checked canonical), to forward unchanged."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


class Proxy:
    def __init__(self, upstream: str, ledger: Ledger, metrics: ProxyMetrics, on_outcome: Callable[[str, Outcome], None],
                 api_key: str | None = None, annotate: bool = False, timeout_s: float = 600.0,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        self.ledger, self.metrics, self.on_outcome = ledger, metrics, on_outcome
        self.api_key, self.annotate, self.max_body = api_key, annotate, max_body
        self.client = httpx.AsyncClient(base_url=upstream.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=5.0),
                                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        routes = [Route("/metrics", self.metrics_page, methods=["GET"]),
                  *(Route(p, self.metered, methods=["POST"]) for p in METERED),
                  Route("/{path:path}", self.passthrough,
                        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])]
        self.app = Canonical(Starlette(routes=routes, lifespan=self._lifespan))

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

    def _check_length(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise TooLarge(f"the request body ({declared} bytes) is over the proxy's --max-body of {self.max_body}")

    async def _limited(self, request: Request) -> AsyncIterator[bytes]:
        """The body as it arrives, refused once it passes ``--max-body`` (a chunked body has no length)."""
        self._check_length(request)
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > self.max_body:
                raise TooLarge(f"the request body is over the proxy's --max-body of {self.max_body} bytes")
            yield chunk

    # pass-through --------------------------------------------------------------
    async def passthrough(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        req = self.client.build_request(request.method, _raw_path(request), params=request.url.query,
                                        headers=self._headers(request, keep_length=True), content=self._limited(request))
        try:
            resp = await self.client.send(req, stream=True)
        except TooLarge as exc:
            return _error(413, str(exc), "invalid_request_error")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; not an error of the proxy's
        except httpx.HTTPError as exc:
            return _error(502, f"upstream unreachable: {why(exc)}", "upstream_error")
        return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code,
                                 headers=self._response_headers(resp, decoded=False),
                                 background=BackgroundTask(resp.aclose))

    # metered ----------------------------------------------------------------------
    def _reject(self, rid: str, out: Outcome, status: str, http_status: int, reason: str) -> Response:
        """A metered request the proxy answers itself: still a stored row, with the reason."""
        out.status, out.http_status, out.error = status, http_status, reason
        self.ledger.start(rid, False)
        self.metrics.in_flight.inc()
        self._end(rid, out)
        return _error(http_status, reason, "invalid_request_error")

    async def _read(self, rid: str, out: Outcome, request: Request) -> bytes | Response:
        """The whole body, or the stored refusal when it cannot be had."""
        try:
            return b"".join([chunk async for chunk in self._limited(request)])
        except ClientDisconnect:
            return self._reject(rid, out, "client_closed", 499, "the client went away before its request arrived")
        except TooLarge as exc:
            return self._reject(rid, out, "bad_request", 413, str(exc))

    async def metered(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        rid = uuid.uuid4().hex
        out = Outcome(request.url.path, UNKNOWN, False, time.time(), time.perf_counter())
        body = await self._read(rid, out, request)
        if isinstance(body, Response):
            return body
        try:
            doc: Any = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        out.streamed = isinstance(doc, dict) and doc.get("stream") is True
        model = doc.get("model") if isinstance(doc, dict) else None
        if isinstance(model, str) and model:
            problem = text_problem(model)
            out.model = model[:MAX_MODEL_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
            if problem is not None:
                return self._reject(rid, out, "bad_request", 400, f"the request's model is refused: {problem}")
        added_usage = False
        if out.streamed and isinstance(doc, dict):
            body, added_usage = with_usage(body, doc)
        headers = [(k, v) for k, v in self._headers(request) if k.lower() != "accept-encoding"]
        req = self.client.build_request("POST", _raw_path(request), params=request.url.query,
                                        headers=headers, content=body)
        self.ledger.start(rid, out.streamed)
        self.metrics.in_flight.inc()
        try:
            resp = await self.client.send(req, stream=True)
        except BaseException as exc:  # unreachable, or cancelled before the upstream answered
            out.status, out.http_status, out.error = "upstream_error", 502, f"upstream unreachable: {why(exc)}"
            self._end(rid, out)
            if isinstance(exc, httpx.HTTPError):
                return _error(502, out.error, "upstream_error")
            raise
        out.http_status = resp.status_code
        if out.streamed and resp.status_code == 200:
            stream = relay(self.ledger, self._end, rid, out, resp, added_usage,
                           self.metrics.kind if self.annotate else None)
            return _ClosingStream(stream, status_code=200, headers=self._response_headers(resp, decoded=True))
        return await self._whole(rid, out, resp)

    async def _whole(self, rid: str, out: Outcome, resp: httpx.Response) -> Response:
        try:
            content = await resp.aread()
        except httpx.HTTPError as exc:
            out.status, out.http_status, out.error = "upstream_error", 502, f"upstream broke off: {why(exc)}"
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

    def _end(self, rid: str, out: Outcome) -> tuple[float, bool]:
        out.duration_s = time.perf_counter() - out.started_s
        self.metrics.in_flight.dec()
        self.on_outcome(rid, out)  # the ledger's on_ended stores it, with its energy
        energy, final = self.ledger.end(rid, out.input_tokens or 0, out.output_tokens)
        return energy.total_j, final

    def _cost(self, rid: str, energy_j: float, final: bool) -> dict[str, str]:
        return {ENERGY_HEADER: f"{energy_j:.6g}", METER_HEADER: self.metrics.kind,
                "x-joulescore-energy-final": str(final).lower(), "x-joulescore-request-id": rid}


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
