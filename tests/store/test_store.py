"""The SQLite store: exactly-once results, durable rows, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from joulescore.errors import StoreError
from joulescore.store import ResultRow, Store, default_db_path
from joulescore.store.rows import RowExtra


def _row(index: int, energy: float = 1.0) -> ResultRow:
    return ResultRow(
        prompt_index=index, prompt_id=f"p{index}", ok=True, error=None, finish_reason="length",
        input_tokens=5, output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=energy / 4,
        decode_j=3 * energy / 4, low_j=energy / 2, high_j=energy * 2, domains={"cpu": energy},
        text="hello", extra=RowExtra(reference="x"),
    )


def test_results_count_exactly_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    store.create_run("run1", 3, {"config": {}})
    assert store.add_result("run1", _row(0))
    assert store.add_result("run1", _row(1))
    assert not store.add_result("run1", _row(1, energy=99.0))  # a retry never double counts
    assert store.done_indices("run1") == {0, 1}
    rows = store.results("run1")
    assert [r.prompt_index for r in rows] == [0, 1]
    assert rows[1].energy_j == pytest.approx(1.0)
    assert rows[0].extra == RowExtra(reference="x")


def test_rows_survive_a_new_connection(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with Store(path) as store:
        store.create_run("run1", 1, {"k": "v"})
        store.add_result("run1", _row(0))
    with Store(path) as again:
        run = again.get_run("run1")
        assert run.status == "running" and run.spec == {"k": "v"} and run.pid == os.getpid()
        assert len(again.results("run1")) == 1


def test_unknown_run_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run 'nope'"):
        Store(tmp_path / "r.db").get_run("nope")


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open results database"):
        Store(blocker / "sub" / "r.db")


def test_default_path_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOULESCORE_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("JOULESCORE_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "joulescore" / "joulescore.db"
