"""Interference and sampled ratings end to end, through the real CLI.

- A real run (SmolLM2, llama.cpp) beside CPU hogs that hold every core but one is marked DISTURBED with
  others' share above 30%, ``--threads auto`` leaves the held cores alone, and the board does not rate it;
  the same run on a quiet machine is not marked.
- ``--precision`` against a synthetic OpenAI-compatible server on loopback whose answer time (and so the
  estimated energy) is steady or wild: it stops early on the steady one, runs to the end on the wild one,
  and continues in the same shuffled order after SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import cli

from joulescore.hardware import allowed_cpus
from joulescore.meters.estimator import own_cpu_s
from joulescore.meters.interference import probe_busy
from joulescore.store.interval import shuffled
from joulescore.tasks.prompts import load_prompts
from joulescore.tasks.spec import load_spec

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat: Linux")

FAST = ("--warmup", "0", "--no-progress", "--json")


# -- a CPU hog beside a real run -----------------------------------------------------------------------------

@contextmanager
def hogs(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` busy-looping processes, each pinned to one of the last ``count`` CPUs this process may use."""
    cpus = allowed_cpus()[-count:] if count else []
    procs = [subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
             for cpu in cpus]
    try:
        time.sleep(0.5)  # they are spinning before the run looks
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _real_run(db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # the default thresholds and watch, given as flags: the suite sets the environment's otherwise (conftest.py)
    return cli("run", "--limit", "6", "--max-new-tokens", "8", *FAST, "--disturbed-cpu-pct", "10",
               "--disturbed-steal-pct", "5", "--busy-probe-s", "1", *extra, db=db)


@pytest.mark.slow
@pytest.mark.skipif(len(allowed_cpus()) < 2, reason="a hog needs a core of its own beside the run's")
def test_a_run_beside_cpu_hogs_is_marked_disturbed_and_not_rated(db: Path) -> None:
    cpus = len(allowed_cpus())
    with hogs(cpus - 1):
        proc = _real_run(db, "--threads", "auto")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    it = record["interference"]
    assert it["measured"] and it["disturbed"], it
    assert it["others_cpu_pct"] > 30, it
    assert it["reason"].startswith("other processes used ") and "of the machine's CPU" in it["reason"]
    assert it["before_run"]["others_cpu_pct"] > 30
    # --threads auto left the hogs their cores
    assert it["threads"]["requested"] == "auto" and it["threads"]["threads"] == 1
    assert record["model"]["extra"]["threads"] == 1
    # the estimator charged the run its share of the idle power; the whole machine is beside it
    if record["energy"]["whole_machine_j"] is not None:
        assert record["energy"]["whole_machine_j"] > record["energy"]["total_j"]
    assert "warning: the machine is already busy" in proc.stderr
    assert f"run {record['run_id']} was DISTURBED" in proc.stderr

    shown = cli("show", record["run_id"], db=db)
    assert shown.returncode == 0 and "DISTURBED" in shown.stdout and "was DISTURBED" in shown.stderr
    board = json.loads(cli("board", "--json", db=db).stdout)
    mine = next(r for r in board if r["run_id"] == record["run_id"])
    assert mine["stars"] is None and mine["disturbed"] and mine["stars_note"].startswith("DISTURBED")


@pytest.mark.slow
def test_the_same_run_on_a_quiet_machine_is_not_marked(db: Path) -> None:
    before = probe_busy(own_cpu_s, seconds=2.0)
    if before is not None and before.others_pct > 5:
        pytest.skip(f"this machine is not quiet: other processes use {before.others_pct:.0f}% of its CPU")
    proc = _real_run(db, "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    it = json.loads(proc.stdout)["interference"]
    assert it["measured"] and not it["disturbed"], it
    assert it["others_cpu_pct"] < 10 and it["reason"] is None
    assert "DISTURBED" not in proc.stderr and "already busy" not in proc.stderr


# -- a synthetic server for --precision -------------------------------------------------------------------------

MODELS = json.dumps({"data": [{"id": "synthetic", "object": "model"}]}).encode()
STREAM = "".join(f"data: {e}\n\n" for e in (
    json.dumps({"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]}),
    json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1}}),
    "[DONE]")).encode()


class Synthetic(ThreadingHTTPServer):
    """Answers every chat after a delay drawn from ``delay_s``: the estimator's energy follows it."""

    daemon_threads = True

    def __init__(self, delay_s: Iterator[float]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay_s = delay_s
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Synthetic

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(MODELS)))
        self.end_headers()
        self.wfile.write(MODELS)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            delay = next(self.server.delay_s)
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(STREAM)


def steady() -> Iterator[float]:
    while True:
        yield 0.1  # long enough that a busy machine's scheduling jitter is a few percent of it


def wild() -> Iterator[float]:
    rng = random.Random(1)
    while True:
        yield 0.4 if rng.random() < 0.1 else 0.005  # CV ~2.7: a 5% interval would take ~11,000 prompts


@contextmanager
def serving(delays: Iterator[float]) -> Iterator[Synthetic]:
    srv = Synthetic(delays)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _precision_args(url: str, precision: str = "5%", limit: str = "150") -> list[str]:
    return ["run", "--backend", "openai", "--endpoint", url, "--precision", precision, "--limit", limit,
            "--max-new-tokens", "1", "--warmup", "0", "--no-progress"]


def _population(db: Path, run_id: str) -> dict[str, Any]:
    with closing(sqlite3.connect(db)) as conn:
        spec = json.loads(conn.execute("SELECT spec_json FROM runs WHERE run_id=?", (run_id,)).fetchone()[0])
    return dict(spec["population"])


def _order(db: Path, run_id: str) -> list[int]:
    with closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT prompt_index FROM results WHERE run_id=? ORDER BY rowid",
                                           (run_id,))]


def _expected_order(limit: int) -> list[int]:
    prompts, _ = load_prompts(load_spec("chat"))
    return [p.index for p in shuffled(prompts, 0)[:limit]]


@pytest.mark.slow
def test_precision_stops_early_on_a_steady_backend(db: Path) -> None:
    with serving(steady()) as srv:
        proc = cli(*_precision_args(srv.url), "--json", db=db, timeout=300)
        assert proc.returncode == 0, proc.stderr
        record = json.loads(proc.stdout)
        assert record["status"] == "complete"
        sampling, interval = record["sampling"], record["interval"]
        assert sampling["sampled"] and sampling["reached"] and sampling["stopped"] == "precision reached"
        assert sampling["prompts_run"] == record["counts"]["done"] < 150 and sampling["prompts_available"] == 150
        assert sampling["prompts_run"] >= 100 and interval["half_width_pct"] <= 5.0
        # a server's tokens cannot be counted before the run: the plain mean, and the record says why
        assert interval["estimator"] == sampling["estimator"] == "plain mean" and interval["prompts"] == 150
        assert "cannot count a prompt's tokens" in sampling["why_plain"] and interval["slope_j_per_token"] is None
        assert record["j_per_query"] == interval["j_per_query"] == sampling["sample_j_per_query"]
        assert _order(db, record["run_id"]) == _expected_order(150)[:sampling["prompts_run"]]
        # a sampled run that reached its precision has nothing left to answer
        again = cli("run", "--resume", record["run_id"], "--json", "--no-progress", db=db, timeout=300)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["counts"]["done"] == sampling["prompts_run"]
    shown = cli("show", record["run_id"], db=db)
    assert "a sampled rating" in shown.stdout and "95% CI" in shown.stdout


@pytest.mark.slow
def test_precision_runs_to_the_end_on_a_wild_backend(db: Path) -> None:
    with serving(wild()) as srv:
        proc = cli(*_precision_args(srv.url, limit="120"), "--json", db=db, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    sampling = record["sampling"]
    assert record["status"] == "complete" and record["counts"]["done"] == 120
    assert not sampling["sampled"] and not sampling["reached"] and sampling["stopped"] == "all prompts answered"
    assert record["interval"]["half_width_pct"] > 5.0
    assert record["interval"]["estimator"] == "plain mean" and "shuffled order" in record["interval"]["refers_to"]


@pytest.mark.slow
def test_a_llama_cpp_precision_run_estimates_by_regression_on_its_prompts_tokens(db: Path) -> None:
    proc = cli("run", "--task", "sentiment", "--precision", "50%", "--limit", "120", "--max-new-tokens", "1",
               "--warmup", "0", "--json", "--no-progress", db=db, timeout=900)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    interval, sampling, counts = record["interval"], record["sampling"], record["counts"]
    assert sampling["sampled"] and sampling["stopped"] == "precision reached" and counts["done"] == 100
    assert interval["estimator"] == sampling["estimator"] == "regression on uncached_input_tokens"
    assert interval["n"] == 100 and interval["prompts"] == 120 and sampling["why_plain"] is None
    population = _population(db, record["run_id"])
    assert population["prompts"] == 120
    assert interval["covariate_population_mean"] == pytest.approx(population["covariate_mean"], abs=1e-3)
    assert "llama.cpp engine's tokenizer" in interval["covariate_source"] and "dataset order" in interval["refers_to"]
    prefilled = (counts["input_tokens"] - counts["cached_input_tokens"]) / counts["succeeded"]
    assert interval["covariate_sample_mean"] == pytest.approx(prefilled, abs=1e-3)
    assert record["j_per_query"] == interval["j_per_query"]
    assert interval["j_per_query_low"] <= record["j_per_query"] <= interval["j_per_query_high"]
    shown = cli("show", record["run_id"], db=db)
    assert "regression on uncached_input_tokens" in shown.stdout


@pytest.mark.slow
def test_precision_resumes_in_the_same_order_after_sigkill(db: Path) -> None:
    with serving(wild()) as srv:
        run = subprocess.Popen([sys.executable, "-m", "joulescore.cli", *_precision_args(srv.url, limit="120"),
                                "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 240
        run_id = None
        while time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.1)
            try:
                with closing(sqlite3.connect(db)) as conn:
                    row = conn.execute("SELECT run_id, COUNT(*) FROM results GROUP BY run_id").fetchone()
            except sqlite3.Error:
                continue
            if row and row[1] >= 30:
                run_id = row[0]
                break
        assert run_id is not None, run.communicate()
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        killed_at = len(_order(db, run_id))
        assert killed_at < 120
        resumed = cli("run", "--resume", run_id, "--json", "--no-progress", db=db, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == "complete" and record["counts"]["done"] == 120
    assert _order(db, run_id) == _expected_order(120)  # the same shuffled order, before and after the kill
