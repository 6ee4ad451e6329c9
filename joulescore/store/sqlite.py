"""SQLite storage: one row per run, one row per answered prompt, committed as it lands.

Each prompt's result is its own transaction, so a crash or Ctrl-C loses at
most the prompt in flight; the (run_id, prompt_index) primary key makes a
result count exactly once however often a run is resumed.  WAL with
``synchronous=NORMAL`` survives a killed process, which is the failure that
matters here, without an fsync per prompt.

Opening never changes a file that is not recognisably joulescore's (see ``migrations``), and a
file this process may not write is opened read-only, so reading commands still work on it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from joulescore import __version__
from joulescore.errors import StoreError
from joulescore.model.record import RunRecord
from joulescore.model.spec import RunSpec
from joulescore.store.common import default_db_path, own_start_s, storable, utc_now
from joulescore.store.migrations import (
    APPLICATION_ID,
    CURRENT_VERSION,
    foreign_reason,
    migrate,
    newer_reason,
    read_header,
    readable_without_migrating,
    user_tables,
    versions,
)
from joulescore.store.record import build_record, run_status
from joulescore.store.rows import ResultRow as ResultRow
from joulescore.store.rows import RowExtra
from joulescore.store.rows import RunRow as RunRow

RESULT_COLUMNS = (
    "prompt_index", "prompt_id", "ok", "error", "finish_reason", "input_tokens", "output_tokens",
    "prefill_s", "decode_s", "prefill_j", "decode_j", "low_j", "high_j", "domains_json", "text",
    "extra_json",
)


#: databases this process holds open, by real path.  Closing any descriptor of a file drops every
#: POSIX lock this process holds on it, SQLite's included, so a file already open here is never
#: opened again by Python to read its header: it was recognised when it was first opened.
_OPEN_HERE: dict[str, int] = {}

RUN_COLUMNS = "run_id, created_at, updated_at, status, num_prompts, pid, host, spec_json, record_json"


def writable(path: Path) -> bool:
    """Whether this process may change an existing database: the file, and its directory, which must
    take the ``-wal``/``-shm``/``-journal`` files SQLite writes beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


class Store:
    """The results database.

    ``readonly``: open it for reading only.  Also chosen automatically when the file or its
    directory is not writable; writes then fail with a one-line ``StoreError``.
    """

    def __init__(self, path: Path | str | None = None, readonly: bool = False) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self.readonly = readonly or (self._exists() and not writable(self.path))
        try:
            self._conn = self._open()
            self._key = str(self.path.resolve())
            _OPEN_HERE[self._key] = _OPEN_HERE.get(self._key, 0) + 1
            # A read-only file may be older than version 2, which added the owner's start time.
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(runs)")}
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open results database {self.path}: {exc}") from None
        started = "pid_started_s" if "pid_started_s" in columns else "NULL"
        self._select_runs = f"SELECT {RUN_COLUMNS}, {started} FROM runs"

    def _exists(self) -> bool:
        """A file with something in it: a missing or 0-byte file is made into a new database."""
        return self.path.exists() and self.path.stat().st_size > 0

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a results database")
        if self._exists() and str(self.path.resolve()) not in _OPEN_HERE:
            header = read_header(self.path)  # raw bytes first: a foreign file is refused before SQLite sees it
            if not header.is_sqlite:
                raise StoreError(f"{self.path} is not a SQLite database; refusing to use it as the results database")
            if header.application_id not in (0, APPLICATION_ID):
                raise StoreError(f"{self.path} is not a joulescore database (its application id is "
                                 f"{header.application_id:#010x}); refusing to modify it")
            if self.readonly and not self._unsaved_wal():
                self._probe()
        elif self.readonly and not self._exists():
            raise StoreError(f"{self.path} is an empty file (0 bytes), not a results database" if self.path.exists()
                             else f"no results database at {self.path}")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self._recognise(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _unsaved_wal(self) -> bool:
        wal = self.path.with_name(self.path.name + "-wal")
        return wal.exists() and wal.stat().st_size > 0

    def _probe(self) -> None:
        """Recognise the file from its main file alone (``immutable=1``: no lock, no ``-shm`` or ``-wal``
        made), so that a reading command leaves another program's file without a file beside it."""
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro&immutable=1"
        with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as probe:
            reason = foreign_reason(probe, self.path) or newer_reason(versions(probe)[0], self.path)
        if reason is not None:
            raise StoreError(reason)

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        wal = self.path.with_name(self.path.name + "-wal")
        if not os.access(self.path.parent, os.W_OK) and not (wal.exists() and wal.stat().st_size > 0):
            # Reading a WAL-mode file needs its -shm beside it, which SQLite cannot create in a
            # read-only directory ("attempt to write a readonly database").  immutable=1 reads the
            # main file alone, with no locks and no -shm: right when no -wal holds unsaved pages
            # and nobody can write here.  With such a -wal, plain mode=ro is the only faithful read.
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)

    def _recognise(self, conn: sqlite3.Connection) -> None:
        """Refuse a file that is not ours or too new; bring an older one up to date, then switch to WAL.

        Only reads happen before the file is recognised, and a file already up to date is not written.
        """
        reason = foreign_reason(conn, self.path)
        user_version, application_id = versions(conn)
        reason = reason or newer_reason(user_version, self.path)
        if reason is not None:
            raise StoreError(reason)
        if self.readonly:
            if not user_tables(conn):
                raise StoreError(f"results database {self.path} is empty, and read-only")
            if not readable_without_migrating(user_version):
                raise StoreError(f"results database {self.path} has schema version {user_version} and needs "
                                 f"upgrading to {CURRENT_VERSION}, but it is read-only")
            return
        if user_version < CURRENT_VERSION or application_id != APPLICATION_ID:
            migrate(conn, self.path)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        self._conn.close()
        left = _OPEN_HERE.get(self._key, 0) - 1
        if left > 0:
            _OPEN_HERE[self._key] = left
        else:
            _OPEN_HERE.pop(self._key, None)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        self._check_writable()
        try:
            return self._conn.execute(sql, tuple(map(storable, params))).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to results database {self.path}: {exc}") from None

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"results database {self.path} is read-only")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged file often shows only when a query reaches the bad page: still one line, not a traceback."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read results database {self.path}: {exc}") from None

    # runs -----------------------------------------------------------------
    def create_run(self, run_id: str, num_prompts: int, spec: RunSpec | dict[str, Any]) -> None:
        """Store a new run with its spec (a dict: one stored before, read back with ``get_run``)."""
        stored = spec.stored() if isinstance(spec, RunSpec) else spec
        now = utc_now()
        self._write(
            "INSERT INTO runs (run_id, created_at, updated_at, status, num_prompts, pid, pid_started_s, host,"
            " spec_json) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
            (run_id, now, now, num_prompts, os.getpid(), own_start_s(), os.uname().nodename, json.dumps(stored)),
        )

    def claim_run(self, run_id: str) -> None:
        """Mark a run as being worked on by this process (for ``--resume``)."""
        self._write(
            "UPDATE runs SET status='running', pid=?, pid_started_s=?, host=?, updated_at=? WHERE run_id=?",
            (os.getpid(), own_start_s(), os.uname().nodename, utc_now(), run_id),
        )

    def set_status(self, run_id: str, status: str, record: RunRecord | None = None) -> None:
        if record is None:
            self._write("UPDATE runs SET status=?, updated_at=? WHERE run_id=?", (status, utc_now(), run_id))
        else:
            self._write(
                "UPDATE runs SET status=?, updated_at=?, record_json=? WHERE run_id=?",
                (status, utc_now(), json.dumps(record.as_json()), run_id),
            )

    def set_num_prompts(self, run_id: str, num_prompts: int) -> None:
        """A ``--precision`` run that stopped early: the prompts it answered are the whole run."""
        self._write("UPDATE runs SET num_prompts=?, updated_at=? WHERE run_id=?", (num_prompts, utc_now(), run_id))

    def set_spec_value(self, run_id: str, key: str, value: Any) -> None:
        """One key of a run's stored spec, set after the run was created (the speed probe timed after it)."""
        self._write("UPDATE runs SET spec_json=json_set(spec_json, ?, json(?)) WHERE run_id=?",
                    (f"$.{key}", json.dumps(value), run_id))

    def get_run(self, run_id: str) -> RunRow:
        with self._reading():
            row = self._conn.execute(f"{self._select_runs} WHERE run_id=?", (storable(run_id),)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return self._run_row(row)

    @staticmethod
    def _run_row(row: tuple[Any, ...]) -> RunRow:
        return RunRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                      json.loads(row[7]), json.loads(row[8]) if row[8] else None, row[9])

    def list_runs(self) -> list[RunRow]:
        with self._reading():
            rows = self._conn.execute(f"{self._select_runs} ORDER BY created_at, run_id").fetchall()
        return [self._run_row(r) for r in rows]

    def record(self, run_id: str) -> RunRecord:
        """The one way to get a run's record: rebuilt from its stored rows, so it is always exact."""
        return build_record(self.get_run(run_id), self.results(run_id), __version__)

    def records(self) -> list[RunRecord]:
        """Every run's record as written when it last ended, with the run's current status (``run_status``).

        Read from the stored JSON (not rebuilt) so that a board over thousands of
        runs stays fast; a run that never ended (killed mid-run) has none yet.
        """
        counts = self.result_counts()
        out = []
        for run in self.list_runs():
            if run.record:
                status = run_status(run, *counts.get(run.run_id, (0, 0)))
                out.append(RunRecord.load({**run.record, "status": status}))
        return out

    # results --------------------------------------------------------------
    def add_result(self, run_id: str, result: ResultRow) -> bool:
        """Store one prompt's result in its own transaction.  False if it was already there."""
        return self._insert_result(run_id, result)

    def add_results(self, run_id: str, results: list[ResultRow]) -> int:
        """Store a batch's results in one transaction: all of them or none.  Returns rows added."""
        with self.transaction():
            return sum(self._insert_result(run_id, r) for r in results)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``): what is read inside it cannot change
        before it commits, so a check and the write that depends on it are one step for every process."""
        self._check_writable()
        try:
            self._write("BEGIN IMMEDIATE", ())
            yield
            self._write("COMMIT", ())
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _insert_result(self, run_id: str, result: ResultRow) -> bool:
        values = (
            result.prompt_index, result.prompt_id, int(result.ok), result.error, result.finish_reason,
            result.input_tokens, result.output_tokens, result.prefill_s, result.decode_s,
            result.prefill_j, result.decode_j, result.low_j, result.high_j,
            json.dumps(result.domains), result.text, result.extra.as_json(),
        )
        cols = ", ".join(("run_id", *RESULT_COLUMNS, "created_at"))
        marks = ", ".join("?" * (len(RESULT_COLUMNS) + 2))
        added = self._write(
            f"INSERT OR IGNORE INTO results ({cols}) VALUES ({marks})", (run_id, *values, utc_now())
        )
        return added == 1

    def delete_failed_results(self, run_id: str) -> int:
        """Forget the run's failed prompts, in one transaction, so that resuming answers them again
        (each still counts once).  Returns how many were deleted."""
        return self._write("DELETE FROM results WHERE run_id=? AND ok=0", (run_id,))

    def result_counts(self) -> dict[str, tuple[int, int]]:
        """Prompts stored and prompts answered, per run: what a run's status is decided from."""
        with self._reading():
            rows = self._conn.execute("SELECT run_id, COUNT(*), SUM(ok) FROM results GROUP BY run_id").fetchall()
        return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}

    def done_indices(self, run_id: str) -> set[int]:
        with self._reading():
            rows = self._conn.execute("SELECT prompt_index FROM results WHERE run_id=?", (run_id,))
            return {r[0] for r in rows}

    def results(self, run_id: str) -> list[ResultRow]:
        return list(self.iter_results(run_id))

    def iter_results(self, run_id: str) -> Iterator[ResultRow]:
        with self._reading():  # rows are read lazily, so a bad page can surface mid-iteration
            cur = self._conn.execute(
                f"SELECT {', '.join(RESULT_COLUMNS)} FROM results WHERE run_id=? ORDER BY prompt_index",
                (run_id,),
            )
            for r in cur:
                yield ResultRow(
                    prompt_index=r[0], prompt_id=r[1], ok=bool(r[2]), error=r[3], finish_reason=r[4],
                    input_tokens=r[5], output_tokens=r[6], prefill_s=r[7], decode_s=r[8],
                    prefill_j=r[9], decode_j=r[10], low_j=r[11], high_j=r[12],
                    domains=json.loads(r[13]), text=r[14], extra=RowExtra.load(json.loads(r[15])),
                )

    def answered_figures(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every run's answered prompts, in order, as (index, input tokens, output tokens, prefill_s, decode_s,
        prefill_j, decode_j, ttft_s, latency_s): one query, no prompt text, for reports over many runs."""
        with self._reading():
            rows = self._conn.execute(
                "SELECT run_id, prompt_index, input_tokens, output_tokens, prefill_s, decode_s, prefill_j, decode_j,"
                " json_extract(extra_json, '$.ttft_s'), json_extract(extra_json, '$.latency_s')"
                " FROM results WHERE ok = 1 ORDER BY run_id, prompt_index").fetchall()
        out: dict[str, list[tuple[Any, ...]]] = {}
        for r in rows:
            out.setdefault(r[0], []).append(r[1:])
        return out

    # sweeps ---------------------------------------------------------------
    def create_sweep(self, sweep_id: str, name: str, plan: dict[str, Any]) -> None:
        self._write("INSERT INTO sweeps (sweep_id, created_at, name, plan_json) VALUES (?, ?, ?, ?)",
                    (sweep_id, utc_now(), name, json.dumps(plan)))

    def set_variant(self, sweep_id: str, position: int, variant: str, settings: dict[str, Any],
                    status: str, run_id: str | None = None, reason: str | None = None) -> None:
        """Record a sweep variant's outcome: its run, or why it has none."""
        self._write(
            "INSERT OR REPLACE INTO sweep_variants (sweep_id, position, variant, settings_json, run_id, status,"
            " reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sweep_id, position, variant, json.dumps(settings), run_id, status, reason),
        )

    def get_sweep(self, sweep_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A sweep's plan and its variants in plan order."""
        with self._reading():
            row = self._conn.execute("SELECT plan_json FROM sweeps WHERE sweep_id=?",
                                     (storable(sweep_id),)).fetchone()
            if row is None:
                raise StoreError(f"no sweep {sweep_id!r} in {self.path}")
            rows = self._conn.execute(
                "SELECT position, variant, settings_json, run_id, status, reason FROM sweep_variants"
                " WHERE sweep_id=? ORDER BY position", (sweep_id,)).fetchall()
        return json.loads(row[0]), [
            {"position": r[0], "variant": r[1], "settings": json.loads(r[2]), "run_id": r[3], "status": r[4],
             "reason": r[5]} for r in rows]

    def list_sweeps(self) -> list[dict[str, Any]]:
        """Every stored sweep, oldest first, with how many of its variants finished or failed."""
        with self._reading():
            rows = self._conn.execute(
                "SELECT s.sweep_id, s.created_at, s.name, s.plan_json, COUNT(v.position),"
                " SUM(v.status = 'complete'), SUM(v.status = 'failed')"
                " FROM sweeps s LEFT JOIN sweep_variants v ON v.sweep_id = s.sweep_id"
                " GROUP BY s.sweep_id ORDER BY s.created_at, s.sweep_id").fetchall()
        out = []
        for r in rows:
            plan = json.loads(r[3])
            out.append({"sweep_id": r[0], "created_at": r[1], "name": r[2],
                        "task": (plan.get("base") or plan).get("task", "chat"),
                        "variants": r[4], "complete": r[5] or 0, "failed": r[6] or 0})
        return out

