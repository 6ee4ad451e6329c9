"""``joulescore proxy``: the meter, the ledger, the store and the app, started and stopped together.

Three threads besides the event loop: the ticker reads the meter between
events (so power is known and idle time is cut into intervals), the writer
owns the database connection (so a slow disk never stalls a request), and
uvicorn's loop serves.  On shutdown requests in flight finish first
(uvicorn's graceful stop), then the meter is read a last time and the
session's total stored beside its parts.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from joulescore.backends.serve import ServedProcess, port_in_use
from joulescore.errors import BadInput, ModelError
from joulescore.proxy.app import Outcome, Proxy
from joulescore.proxy.ledger import Energy, Ledger, Tracked
from joulescore.proxy.metrics import ProxyMetrics
from joulescore.store.requests import RequestRow, RequestStore

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


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port; anything else is a BadInput."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--listen {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9000)")
    return host, int(port)


def check_upstream(upstream: str) -> str:
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--upstream {upstream!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return upstream.rstrip("/").removesuffix("/v1")


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
    raise ModelError(f"--serve command did not answer {base}/v1/models within {timeout_s:.0f} s")


class Writer:
    """The one thread that writes the database: rows are queued, stored in order, each in its own transaction."""

    def __init__(self, db: Path | None) -> None:
        self._queue: queue.Queue[Callable[[RequestStore], Any] | None] = queue.Queue()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(db,), name="joulescore-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    def _run(self, db: Path | None) -> None:
        try:
            store = RequestStore(db)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        with store:
            while (job := self._queue.get()) is not None:
                try:
                    job(store)
                except Exception as exc:  # keep serving; the first failure is reported at the end
                    self.error = self.error or exc

    def put(self, job: Callable[[RequestStore], Any]) -> None:
        self._queue.put(job)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Session:
    """One proxy run: the ledger's results turned into rows, metrics and idle energy."""

    def __init__(self, settings: ProxySettings, writer: Writer, ledger_meter: Any) -> None:
        self.settings, self.writer = settings, writer
        self.session_id = uuid.uuid4().hex[:12]
        self.meter = ledger_meter
        prov = ledger_meter.provenance()
        self.kind: str = prov.kind
        self.outcomes: dict[str, Outcome] = {}
        self.metrics = ProxyMetrics(self.kind, lambda: self.ledger.power_w)
        self._idle = Energy()
        self._idle_s = 0.0
        self._idle_lock = threading.Lock()
        writer.put(lambda s: s.start_session(self.session_id, settings.upstream, self.kind, prov.as_dict()))
        self.ledger = Ledger(ledger_meter, self._settled, self._idle_interval)

    def outcome(self, rid: str, out: Outcome) -> None:
        self.outcomes[rid] = out

    def _settled(self, t: Tracked) -> None:
        out = self.outcomes.pop(t.request_id)
        e = t.energy
        row = RequestRow(t.request_id, self.session_id, out.started_unix, out.path, out.model, out.streamed,
                         out.status, out.http_status, out.input_tokens, out.output_tokens, out.tokens_from,
                         out.ttft_s, out.duration_s, e.total_j, e.total_low_j, e.total_high_j,
                         {d.value: v for d, v in e.energy_j.items()}, self.kind, out.error)
        self.metrics.request(row.model, row.status, row.domains, row.energy_j, row.input_tokens, row.output_tokens)
        self.writer.put(lambda s: s.add_request(row))

    def _idle_interval(self, energy: Energy, span_s: float) -> None:
        self.metrics.idle(energy.energy_j)
        with self._idle_lock:
            self._idle.add(energy)
            self._idle_s += span_s

    def flush_idle(self) -> None:
        with self._idle_lock:
            idle, span_s = self._idle, self._idle_s
            self._idle, self._idle_s = Energy(), 0.0
        if span_s > 0:
            domains = {d.value: v for d, v in idle.energy_j.items()}
            ended = time.time()
            self.writer.put(lambda s: s.add_idle(self.session_id, ended, span_s, idle.total_j, idle.total_low_j,
                                                 idle.total_high_j, domains))

    def finish(self) -> None:
        last = self.ledger.close()
        self.flush_idle()
        first = self.ledger.first
        domains = {d.value: last.energy_j[d] - first.energy_j.get(d, 0.0) for d in last.energy_j}
        total_j = sum(domains.values())
        self.writer.put(lambda s: s.end_session(self.session_id, total_j, domains))


def _ticker(session: Session, tick_s: float, stop: threading.Event) -> None:
    last_flush = time.monotonic()
    while not stop.wait(tick_s):
        session.ledger.tick()
        if time.monotonic() - last_flush >= IDLE_FLUSH_S:
            session.flush_idle()
            last_flush = time.monotonic()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_proxy(settings: ProxySettings) -> None:
    """Serve until Ctrl-C or SIGTERM; every finished request is stored, then the session's total."""
    import uvicorn

    from joulescore.meters import select_meter
    from joulescore.meters.estimator import tree_cpu_s

    if port_in_use(settings.host, settings.port):
        raise BadInput(f"--listen port {settings.port} is already in use; choose another")
    child = ServedProcess(settings.serve, settings.upstream) if settings.serve else None
    try:
        if child is not None:
            _wait_ready(child, settings.upstream, settings.ready_timeout_s)
        meter = select_meter(settings.meter, cpu_seconds=tree_cpu_s if child else system_busy_cpu_s)
        writer = Writer(settings.db)
        meter.start()
        stop = threading.Event()
        try:
            session = Session(settings, writer, meter)
            proxy = Proxy(settings.upstream, session.ledger, session.metrics, session.outcome, settings.api_key,
                          settings.annotate, settings.timeout_s)
            ticker = threading.Thread(target=_ticker, args=(session, settings.tick_s, stop), daemon=True)
            ticker.start()
            config = uvicorn.Config(proxy.app, host=settings.host, port=settings.port, log_level="warning",
                                    access_log=False, lifespan="on", timeout_graceful_shutdown=30,
                                    server_header=False, date_header=False)
            _say(f"joulescore proxy: http://{settings.host}:{settings.port} -> {settings.upstream}; "
                 f"session {session.session_id}; meter {session.kind} ({', '.join(session.meter.provenance().sources[:1])})")
            try:
                uvicorn.Server(config).run()
            except KeyboardInterrupt:  # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again
                pass
            stop.set()
            ticker.join()
            session.finish()
            done = session.ledger.unsettled_j()
            if done:
                _say(f"joulescore proxy: {done:.4g} J of requests that never ended were not charged")
        finally:
            stop.set()
            meter.stop()
            writer.close()
        if writer.error is not None:
            raise BadInput(f"some rows could not be stored: {writer.error}")
        _say(f"joulescore proxy: stopped; session {session.session_id} stored")
    finally:
        if child is not None:
            child.stop()

