"""The real default model, end to end: the record, kill and resume, Ctrl-C and resume."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, cli_in_process

RECORD_FIELDS = {
    "run_id": None,
    "status": None,
    "model": {"name", "path", "backend", "quantization"},
    "task": {"name", "dataset", "num_prompts"},
    "config": {"protocol", "batch_size", "max_new_tokens", "temperature", "seed", "warmup"},
    "hardware": {"cpu", "logical_cpus", "ram_gb", "gpus"},
    "meter": {"kind", "sources", "includes", "uncertainty_pct"},
    "counts": {"prompts", "succeeded", "failed", "input_tokens", "output_tokens"},
    "energy": {"total_j", "cpu_j", "ram_j", "gpu_j", "prefill_j", "decode_j", "low_j", "high_j"},
    "wh_per_1000_queries": None,
    "j_per_query": None,
    "j_per_output_token": None,
    "duration_s": None,
    "tokens_per_s": None,
}


def _results(db: Path, run_id: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT prompt_index, prompt_id FROM results WHERE run_id=? ORDER BY prompt_index", (run_id,)
        ).fetchall()


def _wait_for_results(db: Path, count: int, proc: subprocess.Popen[str], timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    row = conn.execute("SELECT run_id, COUNT(*) FROM results GROUP BY run_id").fetchone()
            except sqlite3.OperationalError:
                row = None
            if row and row[1] >= count:
                return str(row[0])
        time.sleep(0.05)
    raise AssertionError("the run stored no results in time")


def _start(db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "joulescore.cli", "run", "--db", str(db), "--no-progress", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_record_has_every_field_and_honest_figures(db: Path, tmp_path: Path) -> None:
    proc = cli("run", "--limit", "3", "--warmup", "1", "--json", "--out", str(tmp_path / "out"), db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    for key, sub in RECORD_FIELDS.items():
        assert key in record, key
        if sub:
            assert sub <= set(record[key]), (key, sub - set(record[key]))
    assert record["status"] == "complete"
    assert record["model"]["backend"] == "llama.cpp"
    assert record["model"]["quantization"] == "Q4_1"
    assert record["model"]["name"] == "SmolLM2-135M-Instruct"
    assert record["task"] == {**record["task"], "name": "chat", "num_prompts": 3}
    assert record["config"]["protocol"] == "energy-score" and record["config"]["batch_size"] == 1
    counts = record["counts"]
    assert counts["succeeded"] == 3 and counts["failed"] == 0
    assert counts["output_tokens"] == 3 * 10  # energy-score: exactly 10 new tokens each
    energy = record["energy"]
    assert record["meter"]["kind"] == "estimated"
    assert energy["gpu_j"] is None  # the estimator here covers CPU and DRAM only
    assert energy["prefill_j"] + energy["decode_j"] == pytest.approx(energy["total_j"], rel=1e-6)
    assert energy["cpu_j"] + energy["ram_j"] == pytest.approx(energy["total_j"], rel=1e-6)
    assert energy["low_j"] < energy["total_j"] < energy["high_j"]
    assert record["j_per_query"] == pytest.approx(energy["total_j"] / 3, rel=1e-5)
    assert record["wh_per_1000_queries"] == pytest.approx(record["j_per_query"] * 1000 / 3600, rel=1e-5)
    assert record["j_per_output_token"] == pytest.approx(energy["total_j"] / 30, rel=1e-5)
    assert record["tokens_per_s"] > 0
    saved = json.loads(Path(record["run_json"]).read_text())
    assert saved["run_id"] == record["run_id"]

    shown = cli("show", record["run_id"], "--json", db=db)
    assert json.loads(shown.stdout)["energy"]["total_j"] == energy["total_j"]
    listed = cli_in_process("runs", db=db)  # reads of the stored run: in process (no model, no start-up)
    assert record["run_id"] in listed.stdout
    human = cli_in_process("show", record["run_id"], db=db)
    assert "ESTIMATED" in human.stdout and "Wh per 1,000 queries" in human.stdout


def test_resume_after_kill_counts_every_prompt_once(db: Path) -> None:
    total = 8  # enough for the kill to land mid-run: it lands within a poll (0.05 s) of the third result
    proc = _start(db, "--limit", str(total), "--warmup", "0")
    run_id = _wait_for_results(db, 3, proc)
    proc.kill()  # SIGKILL: no handler runs, like a crash or an OOM kill
    proc.wait()
    before = _results(db, run_id)
    assert 3 <= len(before) < total

    resumed = cli("run", "--resume", run_id, "--json", "--no-progress", db=db)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    after = _results(db, run_id)
    assert [i for i, _ in after] == list(range(total))  # none lost, none twice
    assert after[: len(before)] == before
    assert record["status"] == "complete" and record["counts"]["succeeded"] == total
    assert record["counts"]["output_tokens"] == total * 10


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stores_a_partial_run_that_resumes(db: Path, signum: int) -> None:
    proc = _start(db, "--limit", "8", "--warmup", "0")
    run_id = _wait_for_results(db, 3, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"joulescore run --resume {run_id}" in stderr
    assert "Traceback" not in stderr
    with sqlite3.connect(db) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
    assert status == "partial"

    resumed = cli("run", "--resume", run_id, "--json", "--no-progress", db=db)
    assert resumed.returncode == 0, resumed.stderr
    assert [i for i, _ in _results(db, run_id)] == list(range(8))
    assert json.loads(resumed.stdout)["status"] == "complete"


def test_resume_of_a_complete_run_adds_nothing(db: Path) -> None:
    first = json.loads(cli("run", "--limit", "2", "--warmup", "0", "--json", db=db).stdout)
    again = cli("run", "--resume", first["run_id"], "--json", db=db)
    assert again.returncode == 0
    assert json.loads(again.stdout)["energy"]["total_j"] == first["energy"]["total_j"]
    assert len(_results(db, first["run_id"])) == 2


def test_natural_protocol_stops_at_end_of_sequence(db: Path, tmp_path: Path) -> None:
    """A question SmolLM2 answers in a few tokens: the run stops at its end of sequence, far below the cap."""
    data = tmp_path / "short.jsonl"
    data.write_text(json.dumps({"id": "sum", "prompt": "What is 2+2? Answer with one number."}) + "\n")
    proc = cli("run", "--dataset", str(data), "--warmup", "0", "--protocol", "natural", "--max-new-tokens", "48",
               "--json", db=db)
    record = json.loads(proc.stdout)
    assert record["config"]["protocol"] == "natural"
    assert 0 < record["counts"]["output_tokens"] < 48
    with sqlite3.connect(db) as conn:
        finish, text = conn.execute("SELECT finish_reason, text FROM results WHERE run_id=?",
                                    (record["run_id"],)).fetchone()
    assert finish == "stop" and "4" in text


def test_prompt_longer_than_the_context_fails_alone(db: Path, tmp_path: Path) -> None:
    data = tmp_path / "long.jsonl"
    rows = [{"id": "short", "prompt": "Hi"}, {"id": "long", "prompt": "word " * 400}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    proc = cli("run", "--dataset", str(data), "--n-ctx", "256", "--warmup", "0", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["counts"]["succeeded"] == 1 and record["counts"]["failed"] == 1
    assert any("exceeds the context" in e for e in record["errors"])


def test_default_is_smollm2_on_chat_with_llama_cpp(db: Path) -> None:
    proc = cli("run", "--limit", "1", "--warmup", "0", "--json", db=db)
    record = json.loads(proc.stdout)
    assert (record["model"]["name"], record["task"]["name"], record["model"]["backend"]) == (
        "SmolLM2-135M-Instruct", "chat", "llama.cpp")
    assert record["task"]["dataset"] == "chat.jsonl"


def test_prefix_cache_reuse_is_counted_and_can_be_switched_off(db: Path) -> None:
    """Sentiment prompts share the template head: llama.cpp reuses it unless told not to."""
    args = ("run", "--task", "sentiment", "--limit", "2", "--warmup", "0", "--json", "--no-progress")
    cached = json.loads(cli(*args, db=db).stdout)
    counts = cached["counts"]
    assert 0 < counts["cached_input_tokens"] < counts["input_tokens"]
    assert cached["config"]["engine"]["prompt_cache"] is True and cached["model"]["extra"]["prompt_cache"] is True
    fresh = json.loads(cli(*args, "--no-prompt-cache", db=db).stdout)
    assert fresh["counts"]["cached_input_tokens"] == 0
    assert fresh["counts"]["input_tokens"] == counts["input_tokens"]  # same prompts, all prefilled
    assert fresh["config"]["engine"]["prompt_cache"] is False
    shown = cli_in_process("show", cached["run_id"], db=db)
    assert "from the prefix cache" in shown.stdout
