"""The results database's schema version, and the forward-only steps that bring an older file up to it.

A joulescore database carries ``PRAGMA application_id = APPLICATION_ID`` (so it can be told apart
from any other program's SQLite file) and ``PRAGMA user_version`` = its schema version.  Files made
by joulescore 0.1.0 carry neither (both 0) and are recognised by their ``runs`` and ``results``
tables instead.  To change the schema, append one step to ``MIGRATIONS``: step ``i`` turns
version ``i`` into ``i + 1`` and runs inside the transaction that also stamps the new version, so a
crash leaves the file at the old version or the new one, never between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from joulescore.errors import StoreError

APPLICATION_ID = 0x4A534331  # 'JSC1' in ASCII: "JouleScore", container format 1
SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100  # the fixed-size SQLite file header
USER_VERSION_OFFSET = 60  # big-endian u32 in the header
APPLICATION_ID_OFFSET = 68  # big-endian u32 in the header

SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    status       TEXT NOT NULL,
    num_prompts  INTEGER NOT NULL,
    pid          INTEGER,
    host         TEXT,
    spec_json    TEXT NOT NULL,
    record_json  TEXT
)""",
    """CREATE TABLE IF NOT EXISTS results (
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    prompt_index  INTEGER NOT NULL,
    prompt_id     TEXT NOT NULL,
    ok            INTEGER NOT NULL,
    error         TEXT,
    finish_reason TEXT,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    prefill_s     REAL NOT NULL,
    decode_s      REAL NOT NULL,
    prefill_j     REAL NOT NULL,
    decode_j      REAL NOT NULL,
    low_j         REAL NOT NULL,
    high_j        REAL NOT NULL,
    domains_json  TEXT NOT NULL,
    text          TEXT NOT NULL,
    extra_json    TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, prompt_index)
)""",
    """CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id    TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    name        TEXT NOT NULL,
    plan_json   TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS sweep_variants (
    sweep_id      TEXT NOT NULL REFERENCES sweeps(sweep_id),
    position      INTEGER NOT NULL,
    variant       TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    run_id        TEXT,
    status        TEXT NOT NULL,
    reason        TEXT,
    PRIMARY KEY (sweep_id, position)
)""",
)

# What marks an unstamped file as joulescore 0.1.0's: these tables with at least these columns.
LEGACY_COLUMNS = {
    "runs": {"run_id", "created_at", "updated_at", "status", "num_prompts", "pid", "host", "spec_json",
             "record_json"},
    "results": {"run_id", "prompt_index", "prompt_id", "ok", "error", "finish_reason", "input_tokens",
                "output_tokens", "prefill_s", "decode_s", "prefill_j", "decode_j", "low_j", "high_j",
                "domains_json", "text", "extra_json", "created_at"},
}


@dataclass(frozen=True)
class Migration:
    """One forward step.  ``readable_before``: this code can still read a file that has not had it,
    so a read-only file at the older version can be opened without migrating it."""

    apply: Callable[[sqlite3.Connection], None]
    readable_before: bool


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    """Unversioned (empty, or made by 0.1.0) to version 1: the 0.1.0 tables, now stamped."""
    for statement in SCHEMA_V1:
        conn.execute(statement)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Version 2: when the process in ``runs.pid`` started, so a pid the system has since given to
    another process does not pass for the run's owner.  Readable before: it is NULL in old rows."""
    conn.execute("ALTER TABLE runs ADD COLUMN pid_started_s REAL")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Version 3: what ``joulescore proxy`` meters, in tables of their own beside the runs.  A proxy
    session (its meter and the meter's total), one row per request, and its idle energy.  Readable
    before: no run query touches them."""
    for statement in SCHEMA_V3:
        conn.execute(statement)


SCHEMA_V3 = (
    """CREATE TABLE IF NOT EXISTS proxy_sessions (
    session_id      TEXT PRIMARY KEY,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    upstream        TEXT NOT NULL,
    meter_kind      TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    total_j         REAL,
    domains_json    TEXT
)""",
    """CREATE TABLE IF NOT EXISTS requests (
    request_id    TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES proxy_sessions(session_id),
    started_at    TEXT NOT NULL,
    started_unix  REAL NOT NULL,
    path          TEXT NOT NULL,
    model         TEXT NOT NULL,
    streamed      INTEGER NOT NULL,
    status        TEXT NOT NULL,
    http_status   INTEGER NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER NOT NULL,
    tokens_from   TEXT NOT NULL,
    ttft_s        REAL,
    duration_s    REAL NOT NULL,
    energy_j      REAL NOT NULL,
    low_j         REAL NOT NULL,
    high_j        REAL NOT NULL,
    domains_json  TEXT NOT NULL,
    meter_kind    TEXT NOT NULL,
    error         TEXT
)""",
    "CREATE INDEX IF NOT EXISTS requests_by_time ON requests (started_unix)",
    """CREATE TABLE IF NOT EXISTS proxy_idle (
    session_id    TEXT NOT NULL REFERENCES proxy_sessions(session_id),
    ended_unix    REAL NOT NULL,
    duration_s    REAL NOT NULL,
    energy_j      REAL NOT NULL,
    low_j         REAL NOT NULL,
    high_j        REAL NOT NULL,
    domains_json  TEXT NOT NULL,
    PRIMARY KEY (session_id, ended_unix)
)""",
)

def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Version 4: a proxy row is stored as its request ends, its energy provisional until the requests
    that overlapped it have ended too (``energy_final`` 0, then 1).  Older rows were stored final.
    Readable before: a version-3 file's rows read as final."""
    conn.execute("ALTER TABLE requests ADD COLUMN energy_final INTEGER NOT NULL DEFAULT 1")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(_v0_to_v1, readable_before=True),
    Migration(_v1_to_v2, readable_before=True),
    Migration(_v2_to_v3, readable_before=True),
    Migration(_v3_to_v4, readable_before=True),
)
CURRENT_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Header:
    """What a SQLite file's first 100 bytes say, read without SQLite (which could write to it)."""

    is_sqlite: bool
    user_version: int
    application_id: int


def read_header(path: Path) -> Header:
    """The header of an existing non-empty file.  In WAL mode these fields may lag the WAL, which
    matters only for ``user_version``; the caller re-reads it through SQLite."""
    with path.open("rb") as fh:
        head = fh.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or not head.startswith(SQLITE_MAGIC):
        return Header(False, 0, 0)

    def u32(offset: int) -> int:
        return int.from_bytes(head[offset:offset + 4], "big")

    return Header(True, u32(USER_VERSION_OFFSET), u32(APPLICATION_ID_OFFSET))


def user_tables(conn: sqlite3.Connection) -> list[str]:
    """Names of the tables a program made (SQLite's own ``sqlite_*`` tables left out)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [r[0] for r in rows]


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def versions(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(user_version, application_id)`` as SQLite sees them (the WAL included)."""
    user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    return user_version, application_id


def foreign_reason(conn: sqlite3.Connection, path: Path) -> str | None:
    """Why this file is not a joulescore database, or None if it is one (of any version).

    Reads only: a file that is someone else's must come out of this byte-for-byte unchanged.
    """
    user_version, application_id = versions(conn)
    if application_id == APPLICATION_ID:
        return None
    tables = user_tables(conn)
    if application_id != 0:
        why = f"its application id is {application_id:#010x}"
    elif user_version == 0 and not tables:
        return None  # an empty SQLite file: as good as a new one
    elif user_version == 0 and all(LEGACY_COLUMNS[t] <= _columns(conn, t) for t in LEGACY_COLUMNS):
        return None  # made by joulescore 0.1.0, before files were stamped
    else:
        why = f"it has tables: {', '.join(tables)}" if tables else f"its user_version is {user_version}"
    return f"{path} is not a joulescore database ({why}); refusing to modify it"


def newer_reason(user_version: int, path: Path) -> str | None:
    """Why a joulescore file is too new for this code to use, or None."""
    if user_version <= CURRENT_VERSION:
        return None
    return (f"results database {path} has schema version {user_version}, made by a newer joulescore "
            f"(this one knows up to {CURRENT_VERSION}); upgrade joulescore to use it")


def readable_without_migrating(user_version: int) -> bool:
    """Whether this code can read a file at ``user_version`` that it may not migrate (read-only)."""
    return all(m.readable_before for m in MIGRATIONS[user_version:])


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring a recognised joulescore file up to ``CURRENT_VERSION`` in one write transaction.

    The version is read again under the write lock, so two processes opening the same old file at
    once apply each step exactly once.  Returns the version the file was at.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        reason = foreign_reason(conn, path)  # again under the lock: another process may have changed it
        start, application_id = versions(conn)
        reason = reason or newer_reason(start, path)
        if reason is not None:
            raise StoreError(reason)
        for version in range(start, CURRENT_VERSION):
            MIGRATIONS[version].apply(conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        if application_id != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return start
