"""The results database's schema version: stamped, migrated forward, and never used on a file that is not ours."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli

from joulescore.errors import StoreError
from joulescore.store import ResultRow, Store, migrations
from joulescore.store import sqlite as store_sqlite
from joulescore.store.migrations import APPLICATION_ID, CURRENT_VERSION

FIXTURE = Path(__file__).parents[1] / "fixtures" / "joulescore-0.1.0.db"
FIXTURE_RUN_ID = "20261202-002358-a47230"
REPO = Path(__file__).resolve().parents[2]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamp(path: Path) -> tuple[int, int, str]:
    """``(user_version, application_id, journal_mode)`` from the file header, so reading it cannot change
    the file or leave -wal/-shm files beside it (valid for a file whose last writer closed cleanly)."""
    head = path.read_bytes()[:100]
    return (int.from_bytes(head[60:64], "big"), int.from_bytes(head[68:72], "big"),
            {1: "delete", 2: "wal"}[head[18]])


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-"))


def _row(index: int, text: str = "hello") -> ResultRow:
    return ResultRow(
        prompt_index=index, prompt_id=f"p{index}", ok=True, error=None, finish_reason="length",
        input_tokens=5, output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=0.25, decode_j=0.75,
        low_j=0.5, high_j=2.0, domains={"cpu": 1.0}, text=text,
    )


def _filled(path: Path, rows: int = 3, text: str = "hello") -> Path:
    with Store(path) as store:
        store.create_run("run1", rows, {"k": "v"})
        store.add_results("run1", [_row(i, text) for i in range(rows)])
    return path


def _foreign(path: Path, journal_mode: str = "delete", application_id: int = 0, user_version: int = 0) -> Path:
    """Another program's SQLite file."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("CREATE TABLE tags (note_id INTEGER, tag TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.execute(f"PRAGMA application_id={application_id}")
    conn.execute(f"PRAGMA user_version={user_version}")
    conn.close()
    return path


# -- new files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("empty_file", [False, True])
def test_new_database_is_stamped(tmp_path: Path, empty_file: bool) -> None:
    path = tmp_path / "new.db"
    if empty_file:
        path.touch()
    Store(path).close()
    assert _stamp(path) == (CURRENT_VERSION, APPLICATION_ID, "wal")
    with sqlite3.connect(path) as conn:
        assert migrations.user_tables(conn) == ["proxy_idle", "proxy_sessions", "requests", "results", "runs",
                                                "sweep_variants", "sweeps"]


def test_opening_a_current_database_writes_nothing(tmp_path: Path) -> None:
    path = _filled(tmp_path / "r.db")
    before = _sha256(path)
    with Store(path) as store:
        assert [r.run_id for r in store.list_runs()] == ["run1"]
    assert _sha256(path) == before


# -- the 0.1.0 fixture ------------------------------------------------------------------------------

def test_fixture_is_an_unstamped_0_1_0_database() -> None:
    assert _stamp(FIXTURE) == (0, 0, "delete")
    assert FIXTURE.stat().st_size < 200_000


def test_0_1_0_database_is_migrated_and_readable(tmp_path: Path) -> None:
    path = shutil.copy(FIXTURE, tmp_path / "old.db")
    with Store(path) as store:
        run = store.get_run(FIXTURE_RUN_ID)
        assert run.status == "complete" and len(store.results(FIXTURE_RUN_ID)) == run.num_prompts
    assert _stamp(path) == (CURRENT_VERSION, APPLICATION_ID, "wal")


def test_cli_reads_a_0_1_0_database(tmp_path: Path) -> None:
    path = shutil.copy(FIXTURE, tmp_path / "old.db")
    runs = cli("runs", db=path)
    assert runs.returncode == 0 and FIXTURE_RUN_ID in runs.stdout, runs.stderr
    show = cli("show", FIXTURE_RUN_ID, db=path)
    assert show.returncode == 0 and FIXTURE_RUN_ID in show.stdout, show.stderr
    record = json.loads(cli("show", FIXTURE_RUN_ID, "--json", db=path).stdout)
    assert record["run_id"] == FIXTURE_RUN_ID and record["counts"]["done"] == record["counts"]["prompts"]
    assert _sha256(path) == _sha256(FIXTURE)  # reading commands open it read-only: never migrated by a read
    with Store(path):  # a command that writes brings it up to date
        pass
    assert _stamp(path)[:2] == (CURRENT_VERSION, APPLICATION_ID)


def test_a_future_schema_change_is_one_appended_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    current = _filled(tmp_path / "v1.db")
    old = shutil.copy(FIXTURE, tmp_path / "old.db")
    applied: list[str] = []

    def add_note(conn: sqlite3.Connection) -> None:
        applied.append("v1->v2")
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    steps = (*migrations.MIGRATIONS, migrations.Migration(add_note, readable_before=True))
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(migrations, "CURRENT_VERSION", len(steps))
    monkeypatch.setattr(store_sqlite, "CURRENT_VERSION", len(steps))
    for path in (current, old):
        with Store(path) as store:
            assert store.get_run(store.list_runs()[0].run_id)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(steps)
            assert "note" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    Store(current).close()  # already at version 2: nothing left to apply
    assert applied == ["v1->v2", "v1->v2"]


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shutil.copy(FIXTURE, tmp_path / "old.db")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.Migration(broken, readable_before=True),))
    with pytest.raises(StoreError, match="disk I/O error"):
        Store(path)
    assert _stamp(path)[:2] == (0, 0)
    with sqlite3.connect(path) as conn:
        assert "half_done" not in migrations.user_tables(conn)


# -- files that are not ours, or too new ------------------------------------------------------------

@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_another_programs_database_is_refused_untouched(tmp_path: Path, journal_mode: str) -> None:
    path = _foreign(tmp_path / "notes.db", journal_mode)
    before = _sha256(path)
    with pytest.raises(StoreError, match=r"is not a joulescore database \(it has tables: notes, tags\); refusing"):
        Store(path)
    assert_one_line_error(cli("runs", db=path), "not a joulescore database", "notes, tags")
    assert_one_line_error(cli("show", "x", db=path), "not a joulescore database")
    assert _sha256(path) == before
    assert _stamp(path) == (0, 0, journal_mode)
    assert _siblings(path) == []


@pytest.mark.parametrize("application_id, user_version", [(0x12345678, 0), (0, 7)])
def test_a_foreign_stamp_is_refused_untouched(tmp_path: Path, application_id: int, user_version: int) -> None:
    path = _foreign(tmp_path / "other.db", application_id=application_id, user_version=user_version)
    before = _sha256(path)
    with pytest.raises(StoreError, match="is not a joulescore database"):
        Store(path)
    assert _sha256(path) == before


def test_a_newer_joulescore_database_is_refused_untouched(tmp_path: Path) -> None:
    path = _filled(tmp_path / "future.db")
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute(f"PRAGMA user_version={CURRENT_VERSION + 1}")
        conn.execute("PRAGMA journal_mode=DELETE")
    before = _sha256(path)
    with pytest.raises(StoreError, match="made by a newer joulescore"):
        Store(path)
    with pytest.raises(StoreError, match="made by a newer joulescore"):
        Store(path, readonly=True)
    assert_one_line_error(cli("runs", db=path), "newer joulescore", f"schema version {CURRENT_VERSION + 1}")
    assert _sha256(path) == before
    assert _stamp(path) == (CURRENT_VERSION + 1, APPLICATION_ID, "delete")


# -- damaged files ----------------------------------------------------------------------------------

def test_a_file_that_is_not_sqlite_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(1).randbytes(8192))
    assert_one_line_error(cli("runs", db=junk), "not a SQLite database")
    fake = tmp_path / "fake.db"  # a genuine joulescore header, then garbage where the schema should be
    fake.write_bytes(_filled(tmp_path / "real.db").read_bytes()[:100] + random.Random(2).randbytes(8192))
    assert_one_line_error(cli("runs", db=fake), "cannot open results database", "malformed")
    assert junk.read_bytes() == random.Random(1).randbytes(8192)


def test_a_corrupted_page_is_one_line(tmp_path: Path) -> None:
    path = _filled(tmp_path / "bad.db", rows=200, text="energy " * 100)
    page_bytes = 4096
    pages = path.stat().st_size // page_bytes
    with path.open("r+b") as fh:
        fh.seek(pages // 2 * page_bytes)
        fh.write(random.Random(3).randbytes(page_bytes))
    with pytest.raises(StoreError, match="cannot read results database .*malformed"):
        Store(path).results("run1")
    assert_one_line_error(cli("show", "run1", db=path), "malformed")


# -- read-only files --------------------------------------------------------------------------------

def test_readonly_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = _filled(tmp_path / "r.db")
    before = _sha256(path)
    with Store(path, readonly=True) as store:
        assert store.readonly
        assert [r.run_id for r in store.list_runs()] == ["run1"]
        assert len(store.results("run1")) == 3 and store.done_indices("run1") == {0, 1, 2}
        for write in (lambda: store.create_run("run2", 1, {}), lambda: store.set_status("run1", "complete"),
                      lambda: store.add_result("run1", _row(9)), lambda: store.add_results("run1", [_row(9)]),
                      lambda: store.create_sweep("s", "s", {})):
            with pytest.raises(StoreError, match=r"^results database .* is read-only$"):
                write()
    assert _sha256(path) == before


def test_readonly_reads_a_0_1_0_database_without_migrating_it(tmp_path: Path) -> None:
    path = shutil.copy(FIXTURE, tmp_path / "old.db")
    with Store(path, readonly=True) as store:
        assert store.get_run(FIXTURE_RUN_ID).run_id == FIXTURE_RUN_ID
    assert _sha256(path) == _sha256(FIXTURE)


def test_readonly_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results database at"):
        Store(tmp_path / "absent.db", readonly=True)
    assert not (tmp_path / "absent.db").exists()


def test_unwritable_file_or_directory_opens_readonly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _filled(tmp_path / "r.db")
    assert store_sqlite.writable(path)
    # Tests run as root, for whom os.access says yes to everything: pretend the directory is read-only.
    monkeypatch.setattr(store_sqlite.os, "access", lambda p, mode: Path(p) != tmp_path)
    assert not store_sqlite.writable(path)
    with Store(path) as store:
        assert store.readonly and store.get_run("run1").num_prompts == 3
        with pytest.raises(StoreError, match="is read-only"):
            store.create_run("run2", 1, {})
    assert _siblings(path) == []  # immutable=1: no -shm was needed, none was made


def _as_nobody(script: str) -> subprocess.CompletedProcess[str]:
    """Run a Python script with this checkout's joulescore as an unprivileged user."""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script],
        check=False, capture_output=True, text=True, timeout=60, cwd="/",
        env={"PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]},
    )


@pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("setpriv")
                         and Path("/usr/bin/python3").exists()),
                    reason="needs root, setpriv and a system python to drop to an unprivileged user")
def test_a_really_read_only_directory() -> None:
    """As an unprivileged user, on a WAL file in a directory it cannot write: reads work, writes are one line."""
    probe = _as_nobody("import joulescore.store")
    if probe.returncode != 0:
        pytest.skip(f"the unprivileged user cannot import joulescore here: {probe.stderr.strip()[-200:]}")
    folder = Path(tempfile.mkdtemp())  # not tmp_path: its parents are private to root
    try:
        path = _filled(folder / "r.db")
        path.chmod(0o444)
        folder.chmod(0o555)
        proc = _as_nobody(f"from joulescore.store import Store\n"
                          f"s = Store({str(path)!r})\n"
                          f"print(s.readonly, [r.run_id for r in s.list_runs()])\n"
                          f"s.create_run('x', 1, {{}})\n")
        assert proc.stdout.strip() == "True ['run1']", proc.stderr
        assert proc.stderr.strip().endswith(f"StoreError: results database {path} is read-only"), proc.stderr
        assert _siblings(path) == []
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
