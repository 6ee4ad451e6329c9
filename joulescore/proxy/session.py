"""One proxy run's bookkeeping: the ledger's results turned into rows, metrics and idle energy.

A request's row is written as it ends, with its energy provisional when
requests that overlapped it are still in flight; a second write settles it.
So a crash (SIGKILL, power loss) loses at most the unsettled share of a
finished request's energy, never the request.  One thread owns the database
connection (so a slow disk never stalls a request); rows are written in the
order they were queued, each in its own transaction.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joulescore.meters.base import Measurement
from joulescore.proxy.ledger import Ledger, Tracked
from joulescore.proxy.metrics import ProxyMetrics
from joulescore.store.requests import RequestRow, RequestStore

if TYPE_CHECKING:
    from joulescore.proxy.outcome import Outcome

#: at the stop, how long a scraped meter's sample past the last moment is waited for (a 60 s scrape, and some)
FINAL_SAMPLE_WAIT_S = 75.0


def say(message: str) -> None:
    """The proxy's one-line messages, on stderr."""
    print(f"joulescore proxy: {message}", file=sys.stderr, flush=True)


class Writer:
    """The one thread that writes the database: rows are queued, stored in order, each in its own transaction."""

    def __init__(self, db: Path | None) -> None:
        self._queue: queue.Queue[Callable[[RequestStore], Any] | None] = queue.Queue()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.failed = 0
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
                except Exception as exc:  # keep serving; say so at once, and again at the end
                    self.error, self.failed = self.error or exc, self.failed + 1
                    say(f"a row could not be stored: {exc}")

    def put(self, job: Callable[[RequestStore], Any]) -> None:
        self._queue.put(job)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _domains(e: Measurement) -> dict[str, float]:
    return {d.value: v for d, v in e.energy_j.items()}


class Session:
    """The ledger's callbacks: rows stored as requests end and settle, metrics, idle energy."""

    def __init__(self, upstream_shown: str, writer: Writer, meter: Any) -> None:
        self.writer = writer
        self.session_id = uuid.uuid4().hex[:12]
        self.meter = meter
        prov = meter.provenance()
        self.kind: str = prov.kind
        self.outcomes: dict[str, Outcome] = {}
        self._unsettled: dict[str, str] = {}  # request id -> model, for rows stored with provisional energy
        self.metrics = ProxyMetrics(self.kind, lambda: self.ledger.power_w, meter)
        self._idle = Measurement.empty(prov)
        self._idle_s = 0.0
        self._idle_lock = threading.Lock()
        writer.put(lambda s: s.start_session(self.session_id, upstream_shown, self.kind, prov.as_dict()))
        self.ledger = Ledger(meter, self._settled, self._idle_interval, self._ended)

    def outcome(self, rid: str, out: Outcome) -> None:
        """What the app knows of a request that is ending; the ledger's ``on_ended`` stores it."""
        self.outcomes[rid] = out

    def _ended(self, t: Tracked, e: Measurement, final: bool) -> None:
        out = self.outcomes.pop(t.request_id)
        row = RequestRow(t.request_id, self.session_id, out.started_unix, out.path, out.model, out.streamed,
                         out.status, out.http_status, out.input_tokens, out.output_tokens, out.tokens_from,
                         out.ttft_s, out.duration_s, e.total_j, e.total_low_j, e.total_high_j, _domains(e),
                         self.kind, out.error, final)
        self.metrics.ended(row.model, row.status, row.input_tokens, row.output_tokens)
        if final:
            self.metrics.settled(row.model, row.domains, row.energy_j)
        else:
            self._unsettled[t.request_id] = row.model
        self.writer.put(lambda s: s.add_request(row))

    def _settled(self, t: Tracked) -> None:
        model = self._unsettled.pop(t.request_id)
        e, rid, domains = t.energy, t.request_id, _domains(t.energy)
        self.metrics.settled(model, domains, e.total_j)
        self.writer.put(lambda s: s.settle_request(rid, e.total_j, e.total_low_j, e.total_high_j, domains))

    def _idle_interval(self, energy: Measurement, span_s: float) -> None:
        self.metrics.idle(energy.energy_j)
        with self._idle_lock:
            self._idle = self._idle.plus(energy)
            self._idle_s += span_s

    def flush_idle(self) -> None:
        with self._idle_lock:
            idle, span_s = self._idle, self._idle_s
            self._idle, self._idle_s = Measurement.empty(idle.provenance), 0.0
        if span_s > 0:
            domains = _domains(idle)
            ended = time.time()
            self.writer.put(lambda s: s.add_idle(self.session_id, ended, span_s, idle.total_j, idle.total_low_j,
                                                 idle.total_high_j, domains))

    def finish(self) -> None:
        last = self.ledger.close(settle_timeout_s=FINAL_SAMPLE_WAIT_S)
        self.flush_idle()
        first = self.ledger.first
        domains = {d.value: last.energy_j[d] - first.energy_j.get(d, 0.0) for d in last.energy_j}
        total_j = sum(domains.values())
        self.writer.put(lambda s: s.end_session(self.session_id, total_j, domains))
