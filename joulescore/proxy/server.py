"""``joulescore proxy``: the meter, the ledger, the store and the app, started and stopped together.

Three threads besides the event loop: the ticker reads the meter between
events (so power is known and idle time is cut into intervals), the writer
owns the database connection, and uvicorn's loop serves.  The listening socket
is bound before anything else starts, so a bad ``--listen`` is a one-line
error with nothing stored.  On shutdown requests in flight finish first
(uvicorn's graceful stop), then the meter is read a last time and the
session's total stored beside its parts.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

from joulescore.backends.serve import ServedProcess, port_in_use
from joulescore.errors import BadInput, ModelError
from joulescore.proxy.app import Proxy
from joulescore.proxy.checks import DEFAULT_MAX_BODY
from joulescore.proxy.logs import log_config
from joulescore.proxy.session import Session, Writer, say

if TYPE_CHECKING:
    from joulescore.model.scrape import ScrapeOptions

IDLE_FLUSH_S = 5.0


@dataclass(frozen=True)
class ProxySettings:
    upstream: str
    host: str
    port: int
    serve: str | None = None
    meter: str = "auto"
    db: Path | None = None
    api_key: str | None = None
    annotate: bool = False
    tick_s: float = 0.25
    timeout_s: float = 600.0
    ready_timeout_s: float = 180.0
    max_body: int = DEFAULT_MAX_BODY
    #: a scraped meter's source (``joulescore.meters.presets.ScrapeOptions``)
    scrape: ScrapeOptions | None = None


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port; anything else is a BadInput."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--listen {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9000)")
    return host, int(port)


def redact(url: str) -> str:
    """The URL with any ``user:password@`` replaced by ``***@``: what is printed and stored."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2]
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def check_upstream(upstream: str) -> str:
    bad = BadInput(f"--upstream {redact(upstream)!r} is not an http(s) URL with a host and a port number "
                   "(e.g. http://127.0.0.1:8000)")
    try:
        parts = urlsplit(upstream)
        parts.port  # noqa: B018  (raises on a port that is not a number or out of range)
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    return upstream.rstrip("/").removesuffix("/v1")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a host or port that cannot be had is a BadInput before anything starts."""
    if port_in_use(host, port):
        raise BadInput(f"--listen port {port} is already in use; choose another")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BadInput(f"--listen {host}:{port}: cannot listen there ({exc.strerror or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise BadInput(f"--listen {host}:{port}: cannot listen there ({exc.strerror or exc})") from None
    return sock


def system_busy_cpu_s() -> float:
    """CPU seconds the whole machine spent busy: what an upstream on this node burns, whoever started it."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _wait_ready(child: ServedProcess, base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = child.exited()
        if status is not None:
            raise ModelError(f"--serve command exited with status {status} before it was ready: {child.last_line()}")
        try:
            if httpx.get(f"{base}/v1/models", timeout=2.0).status_code not in (502, 503, 504):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise ModelError(f"--serve command did not answer {redact(base)}/v1/models within {timeout_s:.0f} s")


def _ticker(session: Session, tick_s: float, stop: threading.Event) -> None:
    last_flush = time.monotonic()
    while not stop.wait(tick_s):
        session.ledger.tick()
        if time.monotonic() - last_flush >= IDLE_FLUSH_S:
            session.flush_idle()
            last_flush = time.monotonic()


def _serve(settings: ProxySettings, session: Session, sock: socket.socket) -> None:
    """uvicorn on the bound socket until Ctrl-C or SIGTERM, its log in one-line form."""
    import uvicorn

    proxy = Proxy(settings.upstream, session.ledger, session.metrics, session.outcome, settings.api_key,
                  settings.annotate, settings.timeout_s, settings.max_body)
    config = uvicorn.Config(proxy.app, log_config=log_config(), log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=30, server_header=False, date_header=False)
    say(f"http://{settings.host}:{settings.port} -> {redact(settings.upstream)}; session {session.session_id}; "
        f"meter {session.kind} ({', '.join(session.meter.provenance().sources[:1])})")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again
        pass


def run_proxy(settings: ProxySettings) -> None:
    """Serve until Ctrl-C or SIGTERM; every request is stored as it ends, then the session's total."""
    from joulescore.meters import select_meter
    from joulescore.meters.estimator import tree_cpu_s

    sock = bind(settings.host, settings.port)
    child = None
    try:
        child = ServedProcess(settings.serve, settings.upstream) if settings.serve else None
        if child is not None:
            _wait_ready(child, settings.upstream, settings.ready_timeout_s)
        meter = select_meter(settings.meter, cpu_seconds=tree_cpu_s if child else system_busy_cpu_s,
                             options=settings.scrape)
        writer = Writer(settings.db)
        meter.start()
        stop = threading.Event()
        try:
            session = Session(redact(settings.upstream), writer, meter)
            ticker = threading.Thread(target=_ticker, args=(session, settings.tick_s, stop), daemon=True)
            ticker.start()
            _serve(settings, session, sock)
            stop.set()
            ticker.join()
            session.finish()
            left = session.ledger.unsettled_j()
            if left:
                say(f"{left:.4g} J of requests that never ended were not charged")
        finally:
            stop.set()
            meter.stop()
            writer.close()
        if writer.error is not None:
            raise BadInput(f"{writer.failed} rows could not be stored; the first: {writer.error}")
        say(f"stopped; session {session.session_id} stored")
    finally:
        sock.close()
        if child is not None:
            child.stop()
