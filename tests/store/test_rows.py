"""A prompt's stored extras (store/rows.py RowExtra): strict when the runner builds one, tolerant when read back,
and written under the JSON keys older versions read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from joulescore.store.rows import BatchWindow, MediaFigures, ReasoningSplit, RowExtra, WindowFigures
from joulescore.store.sqlite import ResultRow, Store


def _row(index: int, extra: RowExtra) -> ResultRow:
    return ResultRow(prompt_index=index, prompt_id=f"p{index}", ok=True, error=None, finish_reason="stop",
                     input_tokens=5, output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=1.0, decode_j=3.0,
                     low_j=4.0, high_j=4.0, domains={"cpu": 4.0}, text="<think>x</think>42", extra=extra)


def _stored_json(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        return [json.loads(e) for (e,) in conn.execute("SELECT extra_json FROM results ORDER BY prompt_index")]


def test_a_typo_in_a_new_row_fails() -> None:
    with pytest.raises(ValidationError):
        RowExtra(ttft=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BatchWindow(id=0, size=2, window_s=1.0, steady=3.0)  # type: ignore[call-arg]
    extra = RowExtra()
    with pytest.raises(ValueError):
        extra.machien_j = 1.0  # type: ignore[attr-defined]


def test_new_rows_keep_the_old_keys_and_only_those_set(tmp_path: Path) -> None:
    batch = BatchWindow(id=0, size=2, window_s=1.5)
    batch.steady_j, batch.steady_s, batch.steady_tokens = 2.0, 0.5, 8
    media = MediaFigures(file="a.wav", preprocessing_j=0.2, preprocessing_s=0.01)
    rows = [
        RowExtra(reference="x", ttft_s=0.1, latency_s=0.9, batch=batch, machine_j=9.0,
                 interference=WindowFigures(wall_s=1.0, capacity_s=2.0, own_s=1.0, others_s=0.5, steal_s=0.0)),
        RowExtra(answer="42", reasoning=ReasoningSplit(state="closed", tokens=3, answer_tokens=1, reasoning_j=2.0,
                                                       answer_j=1.0, boundary_s=None), cached_input_tokens=4),
        RowExtra(media=media),
    ]
    db = tmp_path / "r.db"
    with Store(db) as store:
        store.create_run("run1", 3, {"config": {}})
        store.add_results("run1", [_row(i, e) for i, e in enumerate(rows)])
    stored = _stored_json(db)
    assert stored[0] == {"reference": "x", "ttft_s": 0.1, "latency_s": 0.9, "machine_j": 9.0,
                         "batch": {"id": 0, "size": 2, "window_s": 1.5, "steady_j": 2.0, "steady_s": 0.5,
                                   "steady_tokens": 8},
                         "interference": {"wall_s": 1.0, "capacity_s": 2.0, "own_s": 1.0, "others_s": 0.5,
                                          "steal_s": 0.0}}
    assert stored[1] == {"answer": "42", "cached_input_tokens": 4,
                         "reasoning": {"state": "closed", "tokens": 3, "answer_tokens": 1, "reasoning_j": 2.0,
                                       "answer_j": 1.0, "boundary_s": None}}
    assert stored[2] == {"media": {"file": "a.wav", "preprocessing_j": 0.2, "preprocessing_s": 0.01}}
    with Store(db) as store:
        back = store.results("run1")
    assert [r.extra for r in back] == rows
    assert back[0].latency_s == 0.9 and back[0].ttft_s == 0.1 and back[1].scored_text == "42"
    assert back[2].latency_s == pytest.approx(0.5) and back[2].scored_text == back[2].text


def test_a_row_with_keys_this_version_does_not_know_still_loads(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Store(db) as store:
        store.create_run("run1", 1, {"config": {}})
        store.add_result("run1", _row(0, RowExtra()))
    newer = {"ttft_s": 0.2, "from_the_future": [1, 2], "batch": {"id": 3, "size": 2, "window_s": 1.0, "new": 1},
             "interference": {"wall_s": 1.0, "gpu_fan_pct": 40}}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE results SET extra_json=?", (json.dumps(newer),))
    with Store(db) as store:
        (row,) = store.results("run1")
    assert row.extra.ttft_s == 0.2 and row.extra.batch == BatchWindow(id=3, size=2, window_s=1.0)
    assert row.extra.interference is not None and row.extra.interference.wall_s == 1.0
    assert row.extra.reasoning is None and row.extra.cached_input_tokens == 0


def test_a_batch_rows_share_of_the_window_scales_seconds_only() -> None:
    figures = WindowFigures(wall_s=1.0, capacity_s=2.0, own_s=1.0, others_s=0.5, steal_s=0.25, cpu_freq_min_pct=80.0,
                            gpu_other_pids=[7])
    share = figures.scaled(0.5)
    assert (share.wall_s, share.capacity_s, share.others_s, share.steal_s) == (0.5, 1.0, 0.25, 0.125)
    assert share.cpu_freq_min_pct == 80.0 and share.gpu_other_pids == [7]
    assert json.loads(RowExtra(interference=share).as_json())["interference"].keys() == \
        {"wall_s", "capacity_s", "own_s", "others_s", "steal_s", "cpu_freq_min_pct", "gpu_other_pids"}
