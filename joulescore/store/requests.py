"""What ``joulescore proxy`` stores: sessions, one row per request, and idle energy, beside the runs.

Each row is its own transaction keyed by the request's id, stored as the request
ends, so a crash loses at most the requests still in flight and never stores one
twice.  A row's energy is provisional (``energy_final`` false) while requests
that overlapped it are still in flight; a second write settles it.  A session row
carries the meter's total over the session when it ends, so the parts can be
checked against the whole.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from joulescore.store.common import utc_now
from joulescore.store.sqlite import Store


@dataclass(frozen=True)
class RequestRow:
    request_id: str
    session_id: str
    started_unix: float
    path: str
    model: str
    streamed: bool
    #: ok, client_closed, upstream_error, http_error (the upstream answered 4xx/5xx)
    status: str
    http_status: int
    #: None when the upstream did not report it (a stream without a usage chunk)
    input_tokens: int | None
    output_tokens: int
    #: "usage" (the upstream's report) or "chunks" (stream chunks counted by the proxy)
    tokens_from: str
    ttft_s: float | None
    duration_s: float
    energy_j: float
    low_j: float
    high_j: float
    domains: dict[str, float]
    meter_kind: str
    error: str | None = None
    #: False while requests that overlapped it were still in flight (a crash then leaves it so)
    energy_final: bool = True


REQUEST_COLUMNS = ("request_id", "session_id", "started_at", "started_unix", "path", "model", "streamed", "status",
                   "http_status", "input_tokens", "output_tokens", "tokens_from", "ttft_s", "duration_s", "energy_j",
                   "low_j", "high_j", "domains_json", "meter_kind", "error", "energy_final")


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="milliseconds")


class RequestStore(Store):
    """The results database, with the proxy's tables."""

    def __enter__(self) -> RequestStore:
        return self

    def start_session(self, session_id: str, upstream: str, meter_kind: str, provenance: dict[str, Any]) -> None:
        self._write("INSERT INTO proxy_sessions (session_id, started_at, upstream, meter_kind, provenance_json)"
                    " VALUES (?, ?, ?, ?, ?)", (session_id, utc_now(), upstream, meter_kind, json.dumps(provenance)))

    def end_session(self, session_id: str, total_j: float, domains: dict[str, float]) -> None:
        self._write("UPDATE proxy_sessions SET ended_at=?, total_j=?, domains_json=? WHERE session_id=?",
                    (utc_now(), total_j, json.dumps(domains), session_id))

    def add_request(self, row: RequestRow) -> bool:
        """Store one finished request; False if its id was stored already."""
        values = (row.request_id, row.session_id, _iso(row.started_unix), row.started_unix, row.path, row.model,
                  int(row.streamed), row.status, row.http_status, row.input_tokens, row.output_tokens,
                  row.tokens_from, row.ttft_s, row.duration_s, row.energy_j, row.low_j, row.high_j,
                  json.dumps(row.domains), row.meter_kind, row.error, int(row.energy_final))
        marks = ", ".join("?" * len(REQUEST_COLUMNS))
        return self._write(f"INSERT OR IGNORE INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({marks})",
                           values) == 1

    def settle_request(self, request_id: str, energy_j: float, low_j: float, high_j: float,
                       domains: dict[str, float]) -> bool:
        """A stored row's final energy, once every request that overlapped it has ended."""
        return self._write("UPDATE requests SET energy_j=?, low_j=?, high_j=?, domains_json=?, energy_final=1"
                           " WHERE request_id=?", (energy_j, low_j, high_j, json.dumps(domains), request_id)) == 1

    def add_idle(self, session_id: str, ended_unix: float, duration_s: float, energy_j: float, low_j: float,
                 high_j: float, domains: dict[str, float]) -> None:
        self._write("INSERT OR IGNORE INTO proxy_idle (session_id, ended_unix, duration_s, energy_j, low_j, high_j,"
                    " domains_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (session_id, ended_unix, duration_s, energy_j, low_j, high_j, json.dumps(domains)))

    def requests_since(self, since_unix: float) -> list[RequestRow]:
        with self._reading():
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(requests)")}
            columns = [c if c in have else "1" for c in REQUEST_COLUMNS]  # a read-only version-3 file: all final
            rows = self._conn.execute(
                f"SELECT {', '.join(columns)} FROM requests WHERE started_unix >= ?"
                " ORDER BY started_unix, request_id", (since_unix,)).fetchall()
        return [RequestRow(r[0], r[1], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9], r[10], r[11], r[12], r[13],
                           r[14], r[15], r[16], json.loads(r[17]), r[18], r[19], bool(r[20])) for r in rows]

    def idle_since(self, since_unix: float) -> tuple[float, float]:
        """Idle joules and seconds stored since a time."""
        with self._reading():
            row = self._conn.execute("SELECT COALESCE(SUM(energy_j), 0), COALESCE(SUM(duration_s), 0)"
                                     " FROM proxy_idle WHERE ended_unix >= ?", (since_unix,)).fetchone()
        return float(row[0]), float(row[1])

    def session(self, session_id: str) -> dict[str, Any]:
        """A session's meter total beside the sums of its requests and idle energy."""
        with self._reading():
            s = self._conn.execute("SELECT started_at, ended_at, upstream, meter_kind, total_j FROM proxy_sessions"
                                   " WHERE session_id=?", (session_id,)).fetchone()
            req = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(energy_j), 0) FROM requests WHERE session_id=?",
                                     (session_id,)).fetchone()
            idle = self._conn.execute("SELECT COALESCE(SUM(energy_j), 0) FROM proxy_idle WHERE session_id=?",
                                      (session_id,)).fetchone()
        if s is None:
            return {}
        return {"started_at": s[0], "ended_at": s[1], "upstream": s[2], "meter_kind": s[3], "total_j": s[4],
                "requests": req[0], "requests_j": req[1], "idle_j": idle[0]}

    def sessions(self) -> list[str]:
        with self._reading():
            return [r[0] for r in self._conn.execute("SELECT session_id FROM proxy_sessions ORDER BY started_at")]


def since_unix(since_s: float) -> float:
    return time.time() - since_s
