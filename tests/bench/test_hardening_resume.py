"""Resume and Ctrl-C, hardened: failed prompts answered again, a changed dataset refused, a reused pid
not taken for the run's owner, Ctrl-C while the model loads (or twice) never silent nor left "running",
and ``--out`` naming a file refused before anything is stored.  Real CLI subprocesses, real model."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import psutil
import pytest
from conftest import assert_one_line_error, cli

from joulescore.store.sqlite import ResultRow, Store

FAST = ("--warmup", "0", "--max-new-tokens", "3", "--no-progress")


def _run(db: Path, *args: str) -> dict:
    proc = cli("run", *FAST, "--json", *args, db=db)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _start(db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "joulescore.cli", "run", "--db", str(db), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_model_file(proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    """Until the process has the GGUF file mapped or open: llama.cpp has started loading it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            fds = " ".join(os.readlink(f) for f in Path(f"/proc/{proc.pid}/fd").iterdir())
        except OSError:
            maps = fds = ""
        if ".gguf" in maps or ".gguf" in fds:
            return
        time.sleep(0.005)
    raise AssertionError("the model never started loading")


def _sql(db: Path, query: str, *params: object) -> list[tuple]:
    """One statement on its own connection, closed at once: a connection left open in this process
    while ``Store`` opens the file would lose its locks (POSIX locks go with any close of the file)."""
    with closing(sqlite3.connect(db)) as conn, conn:
        return conn.execute(query, params).fetchall()


def _rows(db: Path, run_id: str) -> list[tuple]:
    return _sql(db, "SELECT prompt_index, ok, created_at, prefill_j, decode_j, text FROM results"
                    " WHERE run_id=? ORDER BY prompt_index", run_id)


def _status(db: Path, run_id: str) -> str:
    return str(_sql(db, "SELECT status FROM runs WHERE run_id=?", run_id)[0][0])


def _crashed(db: Path, run_id: str, keep: int, pid: int | None, pid_started_s: float | None = None) -> None:
    """Make a stored run look like one whose process died after ``keep`` prompts."""
    _sql(db, "DELETE FROM results WHERE run_id=? AND prompt_index>=?", run_id, keep)
    _sql(db, "UPDATE runs SET status='running', pid=?, pid_started_s=? WHERE run_id=?", pid, pid_started_s, run_id)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _dataset(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


# -- Ctrl-C -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_while_the_model_loads_says_nothing_was_stored(db: Path) -> None:
    proc = _start(db, *FAST, "--limit", "2")
    _wait_for_model_file(proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted before the run was stored: nothing stored"
    with Store(db) as store:
        assert store.list_runs() == []


@pytest.mark.slow
def test_ctrl_c_while_a_resume_loads_marks_the_run_partial_and_says_how_to_continue(db: Path) -> None:
    run_id = _run(db, "--limit", "6")["run_id"]
    _crashed(db, run_id, keep=2, pid=_dead_pid())
    proc = _start(db, "--resume", run_id, "--no-progress")
    _wait_for_model_file(proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    found = re.search(rf"interrupted: (\d) of 6 prompts stored; continue with: joulescore run --resume {run_id}",
                      stderr)
    assert found, stderr
    assert _status(db, run_id) == "partial"
    assert len(_rows(db, run_id)) == int(found.group(1)) < 6


@pytest.mark.slow
def test_a_burst_of_ctrl_c_still_marks_the_run_partial_and_prints_the_resume_command(db: Path) -> None:
    proc = _start(db, *FAST, "--limit", "40")
    deadline = time.monotonic() + 300
    while not (db.exists() and _count_results(db) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    run_id = _sql(db, "SELECT run_id FROM runs")[0][0]
    # Ctrl-C held down: one every 10 ms, through the storing of the run's end, until it is stored
    while proc.poll() is None and _status(db, run_id) == "running":
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"prompts stored; continue with: joulescore run --resume {run_id}" in stderr, stderr
    assert _status(db, run_id) == "partial"


def _count_results(db: Path) -> int:
    try:
        return int(_sql(db, "SELECT COUNT(*) FROM results")[0][0])
    except sqlite3.OperationalError:
        return 0


# -- the prompt set -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_refuses_a_dataset_edited_since_the_run_started(db: Path, tmp_path: Path) -> None:
    texts = ["Name a colour.", "Name a fruit.", "Name a city.", "Name a river."]
    data = _dataset(tmp_path / "rows.jsonl", texts)
    record = _run(db, "--dataset", str(data), "--template", "{text}")
    run_id = record["run_id"]
    assert re.fullmatch(r"[0-9a-f]{64}", record["task"]["prompts_sha256"])
    _crashed(db, run_id, keep=2, pid=_dead_pid())
    _dataset(data, [texts[0], "Name a vegetable.", *texts[2:]])  # one row edited, same count

    refused = cli("run", "--resume", run_id, "--no-progress", db=db)
    assert_one_line_error(refused, f"run {run_id} started on a different prompt set (4 prompts, hash "
                          f"{record['task']['prompts_sha256'][:12]}", "the dataset changed since")
    assert len(_rows(db, run_id)) == 2

    _dataset(data, texts)  # put back as it was: resumable
    resumed = cli("run", "--resume", run_id, "--json", "--no-progress", db=db)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "complete"
    assert [r[0] for r in _rows(db, run_id)] == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_run_stored_without_the_hash_is_checked_by_its_count(db: Path, tmp_path: Path) -> None:
    texts = ["Name a colour.", "Name a fruit.", "Name a city.", "Name a river."]
    data = _dataset(tmp_path / "rows.jsonl", texts)
    run_id = _run(db, "--dataset", str(data), "--template", "{text}")["run_id"]
    _crashed(db, run_id, keep=2, pid=_dead_pid())
    # as stored before the fingerprint existed
    _sql(db, "UPDATE runs SET spec_json=json_remove(spec_json, '$.task.prompts_sha256') WHERE run_id=?", run_id)
    _dataset(data, [*texts, "Name a mountain."])
    assert_one_line_error(cli("run", "--resume", run_id, "--no-progress", db=db),
                          f"run {run_id} had 4 prompts but its dataset now gives 5")
    assert len(_rows(db, run_id)) == 2


# -- the run's owner ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_pid_reused_by_another_process_does_not_block_resume(db: Path) -> None:
    run_id = _run(db, "--limit", "3")["run_id"]
    me = psutil.Process()
    # The stored pid is alive (this test process) but started at another time: not the run's owner.
    _crashed(db, run_id, keep=1, pid=me.pid, pid_started_s=me.create_time() - 3600)
    resumed = cli("run", "--resume", run_id, "--json", "--no-progress", db=db)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["counts"]["done"] == 3
    assert [r[0] for r in _rows(db, run_id)] == [0, 1, 2]


@pytest.mark.slow
def test_a_live_owner_blocks_resume_unless_forced(db: Path) -> None:
    run_id = _run(db, "--limit", "2")["run_id"]
    me = psutil.Process()
    _crashed(db, run_id, keep=1, pid=me.pid, pid_started_s=me.create_time())
    assert_one_line_error(cli("run", "--resume", run_id, "--no-progress", db=db),
                          f"run {run_id} is still running in process {me.pid}", "--force")
    assert _status(db, run_id) == "running" and len(_rows(db, run_id)) == 1
    forced = cli("run", "--resume", run_id, "--force", "--json", "--no-progress", db=db)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["status"] == "complete"
    assert [r[0] for r in _rows(db, run_id)] == [0, 1]


@pytest.mark.slow
def test_two_resumes_started_at_once_take_the_run_over_once(db: Path) -> None:
    run_id = _run(db, "--limit", "3")["run_id"]
    _crashed(db, run_id, keep=0, pid=_dead_pid())
    procs = [_start(db, "--resume", run_id, "--json", "--no-progress") for _ in range(2)]
    done = [(p, *p.communicate(timeout=600)) for p in procs]
    won = [(p, out) for p, out, _ in done if p.returncode == 0]
    lost = [(p, err) for p, _, err in done if p.returncode != 0]
    assert len(won) == 1 and len(lost) == 1, [(p.returncode, err[-500:]) for p, _, err in done]
    (winner, out), (loser, err) = won[0], lost[0]
    assert_one_line_error(subprocess.CompletedProcess(loser.args, loser.returncode, "", err),
                          f"run {run_id} is still running in process {winner.pid}", "--force")
    assert json.loads(out)["status"] == "complete"
    assert [r[0] for r in _rows(db, run_id)] == [0, 1, 2] and _status(db, run_id) == "complete"


_TAKE_OVER = """
import sys, time
from pathlib import Path
from joulescore.bench.session import take_over
from joulescore.errors import StoreError
from joulescore.store.sqlite import Store
db, run_id, go, done = sys.argv[1:]
store = Store(db)
while not Path(go).exists():
    time.sleep(0.001)
try:
    take_over(store, run_id, force=False)
    print("took", flush=True)
except StoreError as exc:
    print(exc, flush=True)
while not Path(done).exists():  # the owner stays alive until both have answered
    time.sleep(0.01)
"""


@pytest.mark.parametrize("racers", [2, 4])
def test_of_processes_racing_to_take_a_run_over_exactly_one_wins(db: Path, tmp_path: Path, racers: int) -> None:
    with Store(db) as store:
        store.create_run("r1", 4, {"config": {}})
    _crashed(db, "r1", keep=0, pid=_dead_pid())
    go, done = tmp_path / "go", tmp_path / "done"
    procs = [subprocess.Popen([sys.executable, "-c", _TAKE_OVER, str(db), "r1", str(go), str(done)],
                              stdout=subprocess.PIPE, text=True) for _ in range(racers)]
    try:
        time.sleep(1.0)  # every racer waiting at the line
        go.touch()
        said = [p.stdout.readline().strip() for p in procs if p.stdout is not None]
    finally:
        done.touch()
        for p in procs:
            p.wait(timeout=60)
    winners = [p.pid for p, line in zip(procs, said) if line == "took"]
    assert len(winners) == 1, said
    assert all(f"still running in process {winners[0]}" in line for line in said if line != "took"), said
    assert _sql(db, "SELECT pid FROM runs WHERE run_id='r1'")[0][0] == winners[0]


def test_force_needs_resume(db: Path) -> None:
    assert_one_line_error(cli("run", "--force", db=db), "--force applies only with --resume")
    assert not db.exists()


# -- failed prompts -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_failed_prompts_are_answered_again_on_resume_and_count_once(db: Path) -> None:
    run_id = _run(db, "--limit", "4")["run_id"]
    before = _rows(db, run_id)
    prompt_id = _sql(db, "SELECT prompt_id FROM results WHERE run_id=? AND prompt_index=2", run_id)[0][0]
    _sql(db, "DELETE FROM results WHERE run_id=? AND prompt_index=2", run_id)
    with Store(db) as store:  # prompt 2 failed (an engine error), stored as the runner stores one
        store.add_result(run_id, ResultRow(
            prompt_index=2, prompt_id=prompt_id, ok=False, error="RuntimeError: engine fell over",
            finish_reason=None, input_tokens=0, output_tokens=0, prefill_s=0.1, decode_s=0.0, prefill_j=0.5,
            decode_j=0.0, low_j=0.4, high_j=0.6, domains={"cpu": 0.5}, text=""))
    shown = json.loads(cli("show", run_id, "--json", db=db).stdout)
    assert shown["counts"]["failed"] == 1

    resumed = cli("run", "--resume", run_id, "--json", "--no-progress", db=db)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "complete"
    assert (record["counts"]["done"], record["counts"]["succeeded"], record["counts"]["failed"]) == (4, 4, 0)
    assert record["errors"] == []
    after = _rows(db, run_id)
    assert [r[0] for r in after] == [0, 1, 2, 3] and all(r[1] == 1 for r in after)
    assert [after[i] for i in (0, 1, 3)] == [before[i] for i in (0, 1, 3)]  # the answered ones are kept as they were
    assert after[2][5]  # a real answer now
    assert record["counts"]["output_tokens"] == 4 * 3


@pytest.mark.slow
def test_a_run_whose_prompts_all_fail_is_failed_and_resume_tries_them_again(db: Path, tmp_path: Path) -> None:
    data = _dataset(tmp_path / "long.jsonl", ["word " * 300, "word " * 300])
    proc = cli("run", *FAST, "--json", "--dataset", str(data), "--template", "{text}", "--n-ctx", "128", db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "failed"
    assert (record["counts"]["done"], record["counts"]["failed"]) == (2, 2)
    assert "2 of 2 prompts failed" in proc.stderr and f"joulescore run --resume {record['run_id']}" in proc.stderr
    first = _rows(db, record["run_id"])
    time.sleep(1.1)  # created_at is stored to the second

    again = cli("run", "--resume", record["run_id"], "--json", "--no-progress", db=db)
    assert again.returncode == 0, again.stderr
    retried = json.loads(again.stdout)
    assert retried["status"] == "failed"
    assert (retried["counts"]["done"], retried["counts"]["failed"]) == (2, 2)
    after = _rows(db, record["run_id"])
    assert [r[0] for r in after] == [0, 1]
    assert all(a[2] > b[2] for a, b in zip(after, first))  # answered again, not kept
    assert "failed" in cli("runs", db=db).stdout


# -- --out --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inside", [False, True], ids=["file", "below-a-file"])
def test_out_naming_a_file_is_refused_before_anything_is_stored(db: Path, tmp_path: Path, inside: bool) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    target = existing / "runs" if inside else existing
    proc = cli("run", *FAST, "--limit", "2", "--out", str(target), db=db)
    assert_one_line_error(proc, f"--out {target}", "is a file")
    assert not db.exists()
    assert existing.read_text() == "mine\n"
