"""Bad input: one line, exit status 2, no traceback, and no run left marked complete."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import assert_one_line_error, cli


def _runs(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT run_id, status FROM runs").fetchall()


def test_unknown_alias(db: Path) -> None:
    assert_one_line_error(cli("run", "--model", "smollm9-1t", db=db), "unknown model 'smollm9-1t'")
    assert _runs(db) == []


def test_missing_model_file(db: Path, tmp_path: Path) -> None:
    proc = cli("run", "--model", str(tmp_path / "absent.gguf"), db=db)
    assert_one_line_error(proc, "model file not found")
    assert _runs(db) == []


def test_corrupt_model_file(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"this is not a model at all" * 100)
    assert_one_line_error(cli("run", "--model", str(bad), db=db), "not a GGUF model file")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 40)
    assert_one_line_error(cli("run", "--model", str(truncated), db=db), "cannot load")
    assert _runs(db) == []


def test_unknown_task(db: Path) -> None:
    assert_one_line_error(cli("run", "--task", "poetry", db=db), "unknown task 'poetry'")
    assert not db.exists()  # refused before the results database is made


def test_a_bad_dataset_or_engine_leaves_no_database(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "fine"}\n{oops\n', encoding="utf-8")
    db = tmp_path / "new.db"
    assert_one_line_error(cli("run", "--dataset", str(data), db=db), "d.jsonl:2: not valid JSON")
    assert_one_line_error(cli("run", "--task", "asr", "--backend", "llama.cpp", db=db), "reads text")
    assert not db.exists()


def test_malformed_dataset_line(db: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "fine"}\n{oops\n', encoding="utf-8")
    assert_one_line_error(cli("run", "--dataset", str(data), db=db), "d.jsonl:2: not valid JSON")
    assert _runs(db) == []


def test_limit_zero(db: Path) -> None:
    assert_one_line_error(cli("run", "--limit", "0", db=db), "--limit must be at least 1")


def test_unwritable_database(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = cli("run", "--limit", "1", db=blocker / "nested" / "r.db")
    assert_one_line_error(proc, "cannot open results database")


def test_unknown_resume_id(db: Path) -> None:
    assert_one_line_error(cli("run", "--resume", "no-such-run", db=db), "no run 'no-such-run'")


def test_unknown_run_for_show(db: Path) -> None:
    from joulescore.store.sqlite import Store

    Store(db).close()  # a results database with no runs (a missing one is an error of its own)
    assert_one_line_error(cli("show", "nope", db=db), "no run 'nope'")


def test_unknown_protocol_and_meter(db: Path) -> None:
    assert_one_line_error(cli("run", "--protocol", "fast", db=db), "unknown protocol 'fast'")
    assert_one_line_error(cli("run", "--meter", "oracle", db=db), "unknown meter 'oracle'")


def test_tasks_and_meters_list_what_is_here() -> None:
    tasks = cli("tasks")
    assert tasks.returncode == 0 and "chat" in tasks.stdout and "1000" in tasks.stdout
    meters = cli("meters")
    assert meters.returncode == 0 and "estimator" in meters.stdout
