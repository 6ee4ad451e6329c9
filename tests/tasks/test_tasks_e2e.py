"""Every task with a real small model through the real CLI and SQLite; custom tasks; board and label.

Kept short on 2 cores: a few prompts per task, no warm-up, one engine thread.
The 100- and 1,000-prompt figures come from ``benchmarks/tasks.py``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Cli, assert_one_line_error, cli, cli_in_process

FAST = ("--warmup", "0", "--threads", "1", "--no-progress")
METRIC_OF = {"reasoning": "exact_match", "summarization": "rougeL_f1", "extractive-qa": "squad_v2_exact",
             "sentiment": "accuracy", "sentence-similarity": "spearman", "chat": "output_tokens_mean"}


def _run(db: Path, *args: str, run: Cli = cli) -> dict:
    proc = run("run", *FAST, "--json", *args, db=db)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _run_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(METRIC_OF))
def test_smollm2_runs_every_task(task: str, db: Path) -> None:
    record = _run(db, "--task", task, "--limit", "3")
    assert record["status"] == "complete" and record["counts"]["succeeded"] == 3
    q = record["quality"]
    assert q["metric"] == METRIC_OF[task] and q["n"] == 3
    assert q["value"] is None or isinstance(q["value"], float)
    assert record["counts"]["output_tokens"] == 30  # energy-score: exactly 10 new tokens each
    assert record["j_per_output_token"] > 0
    assert record["stars"].startswith("no stars: peer group has 1 run(s)")


@pytest.mark.slow
def test_minilm_encoder_scores_sentence_similarity(db: Path) -> None:
    # in this process: torch is loaded here already in a whole session, and no subprocess boundary is tested
    record = _run(db, "--task", "sentence-similarity", "--backend", "encoder", "--model", "minilm-l6",
                  "--limit", "10", run=cli_in_process)
    assert record["model"]["name"] == "all-MiniLM-L6-v2" and record["model"]["backend"] == "encoder"
    assert record["counts"]["succeeded"] == 10 and record["counts"]["output_tokens"] == 0
    assert record["counts"]["input_tokens"] > 100
    assert record["j_per_output_token"] is None and record["j_per_query"] > 0
    assert record["quality"]["value"] > 0.5  # MiniLM ranks STS pairs well; a broken pooling would not
    proc = cli("show", record["run_id"], db=db)
    assert "n/a J/output token" in proc.stdout
    assert "ESTIMATED" in proc.stdout or "MEASURED" in proc.stdout


def test_model_task_mismatches_are_one_line_errors(db: Path) -> None:
    assert_one_line_error(cli("run", "--task", "chat", "--backend", "encoder", "--model", "minilm-l6", db=db),
                          "needs a generative model", "sentence-similarity")
    assert_one_line_error(cli("run", "--task", "sentiment", "--backend", "encoder", "--model", "minilm-l6",
                              *FAST, db=db), "does not fit all-MiniLM-L6-v2", "no offline sentiment classifier")
    assert_one_line_error(cli("run", "--task", "sentence-similarity", "--model", "minilm-l6", db=db),
                          "is an encoder", "--backend encoder")
    assert _run_count(db) == 0


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised BERT sentiment classifier with MiniLM's tokenizer (real loading code)."""
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from joulescore.backends.models import resolve_encoder

    target = tmp_path_factory.mktemp("tiny-sentiment")
    src = resolve_encoder("minilm-l6").path
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, target / name)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    BertForSequenceClassification(config).save_pretrained(target)
    return target


@pytest.mark.slow
def test_a_classifier_folder_runs_sentiment(tiny_classifier: Path, db: Path) -> None:
    # in this process, where the folder was built (torch and transformers loaded); the refusal below stays a
    # subprocess: one line on stderr, no traceback, as a user sees it
    record = _run(db, "--task", "sentiment", "--backend", "encoder", "--model", str(tiny_classifier),
                  "--limit", "4", run=cli_in_process)
    assert record["counts"]["succeeded"] == 4 and record["quality"]["metric"] == "accuracy"
    assert record["quality"]["details"]["unparsed"] == 0  # every answer is a label
    assert_one_line_error(cli("run", "--task", "sentence-similarity", "--backend", "encoder", "--model",
                              str(tiny_classifier), *FAST, db=db), "does not fit", "embedding model")


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_custom_dataset_with_template_and_metric(tmp_path: Path, db: Path) -> None:
    data = _write(tmp_path / "mine.jsonl", [
        {"id": "a", "review": "I loved every bite.", "gold": "positive"},
        {"id": "b", "review": "Cold food and a rude waiter.", "gold": "negative"},
    ])
    record = _run(db, "--dataset", str(data), "--template",
                  "Is this review positive or negative? One word.\n\n{review}", "--metric", "label_accuracy",
                  "--reference-field", "gold")
    assert record["task"]["name"] == "custom:mine.jsonl" and record["task"]["metric"] == "label_accuracy"
    assert record["quality"]["metric"] == "accuracy" and record["quality"]["n"] == 2
    resumed = cli("run", "--resume", record["run_id"], "--json", "--no-progress", db=db)
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["task"]["name"] == "custom:mine.jsonl"


def test_malformed_custom_datasets_stop_before_measuring(tmp_path: Path, db: Path) -> None:
    rows = [{"review": "ok", "gold": "positive"}, {"text": "no review"}, {"review": "no gold"},
            {"review": "ok", "gold": "negative"}]
    data = _write(tmp_path / "bad.jsonl", rows)
    tpl = ("--template", "Review: {review}")
    # the first refusal as a user meets it (a subprocess); the other checks of the file and flags in process
    assert_one_line_error(cli("run", "--dataset", str(data), *tpl, "--metric", "label_accuracy",
                              "--reference-field", "gold", db=db),
                          "line 2 (missing review, gold), 3 (missing gold)")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"review": "a"}\n{"review": \n', encoding="utf-8")
    assert_one_line_error(cli_in_process("run", "--dataset", str(broken), *tpl, db=db),
                          "broken.jsonl:2: not valid JSON")
    assert_one_line_error(cli_in_process("run", *tpl, db=db), "--template needs --dataset")
    assert_one_line_error(cli_in_process("run", "--dataset", str(data), "--template", "Review: {review", db=db),
                          "template is not valid")
    assert_one_line_error(cli_in_process("run", "--dataset", str(data), *tpl, "--metric", "bleu", db=db),
                          "unknown metric 'bleu'")
    assert_one_line_error(cli_in_process("run", "--dataset", str(data), *tpl, "--metric", "label_accuracy", db=db),
                          "needs --reference-field")
    assert _run_count(db) == 0  # nothing was stored, nothing measured


@pytest.mark.slow
def test_stars_board_and_label_from_real_runs(tmp_path: Path, db: Path) -> None:
    ids = [_run(db, "--task", "sentiment", "--limit", "1")["run_id"] for _ in range(4)]
    proc = cli("run", *FAST, "--task", "sentiment", "--limit", "1", db=db)
    assert proc.returncode == 0, proc.stderr
    assert "stars" in proc.stdout and "/5 (equal-bins over 5 runs in peer group" in proc.stdout
    # the board and its refusals read the stored runs in process (no model; `board` subprocess runs are in test_aies)
    board = json.loads(cli_in_process("board", "--task", "sentiment", "--json", "--pareto", db=db).stdout)
    runs = [r for r in board if r["run_id"]]
    assert len(runs) == 5 and all(1 <= r["stars"] <= 5 for r in runs)
    assert max(r["stars"] for r in runs) == 5  # the lowest energy always gets 5 stars
    assert [r["wh_per_1000"] for r in runs] == sorted(r["wh_per_1000"] for r in runs)
    assert all(r["mark"] in ("MEASURED", "ESTIMATED", "MIXED (part estimated)") for r in runs)
    table = cli_in_process("board", "--rating", "quintile", db=db)
    assert table.returncode == 0 and "sentiment" in table.stdout
    assert_one_line_error(cli_in_process("board", "--rating", "deciles", db=db), "unknown rating rule")
    for suffix in ("png", "svg"):
        out = tmp_path / f"label.{suffix}"
        made = cli("label", ids[0], "-o", str(out), db=db)
        assert made.returncode == 0, made.stderr
        assert out.stat().st_size > 5000
    assert_one_line_error(cli("label", "nope", "-o", str(tmp_path / "x.svg"), db=db), "no run 'nope'")
