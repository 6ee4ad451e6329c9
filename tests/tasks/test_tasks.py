"""Task specs and prompt sets: shipped data, rendering, and every malformed-input path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from joulescore.errors import BadInput, DatasetError
from joulescore.tasks import load_prompts, load_spec, read_jsonl, task_names
from joulescore.tasks.metrics import Response, length_stats
from joulescore.tasks.spec import data_path


def test_chat_task_ships_1000_prompts_with_attribution() -> None:
    spec = load_spec("chat")
    prompts, path = load_prompts(spec)
    assert len(prompts) == 1000
    assert path == data_path("chat.jsonl")
    assert prompts[0].messages == [{"role": "user", "content": prompts[0].row["prompt"]}]
    assert len({p.id for p in prompts}) == 1000
    sources = data_path("SOURCES.md").read_text(encoding="utf-8")
    assert "chat.jsonl" in sources and "Apache-2.0" in sources


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(BadInput, match="unknown task 'chatt'; known tasks: .*chat"):
        load_spec("chatt")
    assert "chat" in task_names()


def test_malformed_line_is_reported_by_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_non_object_line_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"prompt": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"list.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_rows_missing_template_fields_stop_before_running(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    rows = [{"prompt": "ok"}, {"question": "no prompt"}, {"prompt": "ok"}, {"text": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 2 \(missing prompt\), 4 \(missing prompt\)"):
        load_prompts(load_spec("chat"), path)


def test_empty_and_missing_datasets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no rows"):
        read_jsonl(empty)
    with pytest.raises(DatasetError, match="dataset not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_custom_dataset_renders_through_the_template(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "a1", "prompt": "Say hi"}\n', encoding="utf-8")
    prompts, _ = load_prompts(load_spec("chat"), path)
    assert prompts[0].id == "a1"
    assert prompts[0].messages[0]["content"] == "Say hi"


def test_length_metric_on_known_values() -> None:
    q = length_stats([Response("a", 10), Response("bb", 20), Response("ccc", 30), Response("d", 40)])
    assert q.value == 25
    assert q.details["median"] == 25
    assert q.details["p90"] == 40
    assert q.details["max"] == 40
    assert q.higher_is_better is None
