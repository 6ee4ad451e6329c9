"""OpenAI-compatible servers that misbehave, and served engines that must not outlive joulescore.

A tiny real HTTP server on loopback answers as each test chooses (the model
list's shape, the stream's lines, the usage counts); the real CLI runs
against it.  Every misbehaviour is a one-line error at start or a failed
prompt whose reason is stored, never a traceback and never a run left running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from conftest import assert_one_line_error, cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc: Linux")

GOOD_MODELS = json.dumps({"data": [{"id": "tiny", "object": "model"}]})


def delta(text: str) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def final(usage: object) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": usage})


def sse(*events: str) -> list[str]:
    """A stream's lines: each payload as a ``data:`` event, then the end marker."""
    return [f"data: {e}" for e in events] + ["data: [DONE]"]


GOOD_STREAM = sse(delta("a"), delta("b"), delta("c"), final({"prompt_tokens": 7, "completion_tokens": 3}))


@dataclass
class Behaviour:
    """What the server answers: GET /v1/models, and the lines of each chat stream (request i gets stream i)."""

    models_status: int = 200
    models_body: str = GOOD_MODELS
    streams: list[list[str]] = field(default_factory=lambda: [GOOD_STREAM])
    chats: int = 0


class Misbehaving(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Misbehaving

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        b = self.server.behaviour
        if self.path == "/v1/models":
            self._send(b.models_status, b.models_body.encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        b = self.server.behaviour
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        stream = b.streams[b.chats % len(b.streams)]
        b.chats += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
        for line in stream:
            self.wfile.write(f"{line}\n\n".encode())


@pytest.fixture
def server() -> Iterator[Misbehaving]:
    srv = Misbehaving(Behaviour())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run_against(url: str, db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("run", "--backend", "openai", "--endpoint", url, "--limit", "2", "--warmup", "0",
               "--max-new-tokens", "3", "--no-progress", "--json", *extra, db=db, timeout=120)


def stored(db: Path) -> tuple[list[str], list[tuple[int, str | None, int, int]]]:
    """Every run's status, and every stored row's (ok, error, input tokens, output tokens)."""
    with sqlite3.connect(db) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM runs")]
        rows = list(conn.execute("SELECT ok, error, input_tokens, output_tokens FROM results ORDER BY prompt_index"))
    return statuses, rows


def runs_stored(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a well-behaved answer first: the server above is a fair one -------------------------------------------

def test_a_well_behaved_server_is_measured_with_its_own_counts(server: Misbehaving, db: Path) -> None:
    proc = run_against(server.url, db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete" and record["counts"]["succeeded"] == 2
    assert stored(db)[1] == [(1, None, 7, 3), (1, None, 7, 3)]


# --- the model list --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "body", "fragment"), [
    (200, "[]", "not a model list"),
    (200, '{"data": null}', "not a model list"),
    (200, '{"data": ["tiny", "other"]}', "not a model list"),
    (200, '["tiny", "other"]', "not a model list"),
    (200, '{"data": []}', "lists no models"),
    (200, "<html>hello</html>", "not JSON"),
    (500, '{"error": "boom"}', "HTTP 500"),
])
def test_a_model_list_that_is_not_one_is_a_one_line_error(server: Misbehaving, db: Path, status: int, body: str,
                                                          fragment: str) -> None:
    server.behaviour.models_status, server.behaviour.models_body = status, body
    proc = run_against(server.url, db)
    assert_one_line_error(proc, fragment, "/v1/models", server.url)
    assert runs_stored(db) == 0 and server.behaviour.chats == 0


# --- the stream ------------------------------------------------------------------------------------------

#: stream events that are not OpenAI chat chunks, and what the failed prompt's stored reason says
BAD_STREAMS: list[tuple[list[str], str]] = [
    (sse("42"), "not a JSON object: 42"),
    (sse('"x"'), 'not a JSON object: "x"'),
    (sse("[1]"), "not a JSON object: [1]"),
    (sse("null"), "not a JSON object: null"),
    (sse(delta("a"), "garbage{"), "not JSON: garbage{"),
    (sse(delta("a"), '{"choices": "abc"}'), "choices that are not a list"),
    (sse('{"choices": [42]}'), "not an OpenAI chat delta"),
    (sse('{"choices": [{"delta": "text"}]}'), "not an OpenAI chat delta"),
    (sse('{"choices": [{"delta": {"content": 7}}]}'), "not an OpenAI chat delta"),
    (sse('{"usage": 5}'), "usage report that is not an object"),
    (sse('{"error": {"message": "out of memory"}}'), "error mid-stream: out of memory"),
    (["garbage", "more garbage"], "no stream events"),
    (sse("[" * 100_000), "not JSON: [[["),
]


def test_stream_events_that_are_not_chat_chunks_fail_the_prompt(server: Misbehaving, db: Path) -> None:
    server.behaviour.streams = [stream for stream, _ in BAD_STREAMS]  # prompt i gets stream i
    proc = run_against(server.url, db, "--limit", str(len(BAD_STREAMS)))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and f"{len(BAD_STREAMS)} of {len(BAD_STREAMS)} prompts failed" in proc.stderr
    statuses, rows = stored(db)
    assert statuses and "running" not in statuses
    assert json.loads(proc.stdout)["status"] == statuses[0]
    assert len(rows) == len(BAD_STREAMS)
    for (ok, error, _, _), (_, fragment) in zip(rows, BAD_STREAMS):
        assert ok == 0 and error is not None and fragment in error, (error, fragment)
    assert server.behaviour.chats == len(BAD_STREAMS)  # failed once a byte arrived: not sent again


#: usage reports with invalid counts: what the stored reason shows, the counts stored instead, and how
BAD_USAGE: list[tuple[dict[str, object], str, int, int, str]] = [
    ({"prompt_tokens": 7, "completion_tokens": -5}, "completion_tokens=-5", 7, 2, "counted from the streamed"),
    ({"prompt_tokens": -1, "completion_tokens": -2}, "prompt_tokens=-1, completion_tokens=-2", 0, 2,
     "counted from the streamed"),
    ({"prompt_tokens": None, "completion_tokens": 5}, "prompt_tokens=null", 0, 5, "0 input tokens (unknown)"),
    ({"prompt_tokens": 7}, "completion_tokens=missing", 7, 2, "7 input tokens as reported"),
    ({"total_tokens": 9}, "prompt_tokens=missing, completion_tokens=missing", 0, 2, "counted from the streamed"),
    ({"prompt_tokens": "7", "completion_tokens": 2.5}, 'prompt_tokens="7", completion_tokens=2.5', 0, 2,
     "counted from the streamed"),
    ({"prompt_tokens": True, "completion_tokens": 5}, "prompt_tokens=true", 0, 5, "5 output tokens as reported"),
]


def test_invalid_token_counts_are_never_stored(server: Misbehaving, db: Path) -> None:
    server.behaviour.streams = [sse(delta("a"), delta("b"), final(usage)) for usage, *_ in BAD_USAGE]
    proc = run_against(server.url, db, "--limit", str(len(BAD_USAGE)))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and f"{len(BAD_USAGE)} of {len(BAD_USAGE)} prompts failed" in proc.stderr
    statuses, rows = stored(db)
    assert statuses and "running" not in statuses
    assert len(rows) == len(BAD_USAGE)
    for (ok, error, stored_in, stored_out), (_, shown, n_in, n_out, note) in zip(rows, BAD_USAGE):
        assert ok == 0 and error is not None and f"invalid ({shown})" in error and note in error, error
        assert (stored_in, stored_out) == (n_in, n_out)


def test_a_null_or_empty_usage_is_no_report_and_the_chunks_are_counted(server: Misbehaving, db: Path) -> None:
    server.behaviour.streams = [sse(delta("a"), delta("b"), final(None)), sse(delta("a"), delta("b"), final({}))]
    proc = run_against(server.url, db)
    assert proc.returncode == 0, proc.stderr
    assert stored(db)[1] == [(1, None, 0, 2), (1, None, 0, 2)]


# --- the command line ------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["notaurl", "ftp://x", "http://", "http://127.0.0.1:99999",
                                      "http://127.0.0.1:8000/v1 extra"])
def test_an_endpoint_that_is_not_an_http_url_is_a_one_line_error(db: Path, endpoint: str) -> None:
    proc = run_against(endpoint, db)
    assert_one_line_error(proc, "--endpoint must be an http:// or https:// URL")
    assert runs_stored(db) == 0


@pytest.mark.parametrize(("command", "fragment"), [("python -m x 'oops", "no closing quotation"),
                                                    ("   ", "--serve needs a command")])
def test_a_serve_command_that_does_not_split_is_a_one_line_error(db: Path, command: str, fragment: str) -> None:
    proc = run_against(f"http://127.0.0.1:{free_port()}", db, "--serve", command)
    assert_one_line_error(proc, fragment)
    assert runs_stored(db) == 0


# --- served engines ------------------------------------------------------------------------------------------

def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes in a process group."""
    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                members.append(p.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return members


def _port_free(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        pass
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _static_openai(tmp_path: Path) -> Path:
    """A folder that ``python -m http.server`` serves as a model list at /v1/models."""
    root = tmp_path / "site"
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "models").write_text(GOOD_MODELS)
    return root


def test_sigkill_of_joulescore_takes_the_served_engine_and_its_children_along(db: Path, tmp_path: Path) -> None:
    port = free_port()
    # a server with a child of its own in its group, as multi-process engines have
    serve = (f"sh -c 'sleep 300 & exec {sys.executable} -m http.server {port} --bind 127.0.0.1 "
             f"--directory {_static_openai(tmp_path)}'")
    run = subprocess.Popen(
        [sys.executable, "-m", "joulescore.cli", "run", "--db", str(db), "--backend", "openai", "--serve", serve,
         "--endpoint", f"http://127.0.0.1:{port}", "--idle-baseline", "120", "--limit", "2", "--warmup", "0",
         "--max-new-tokens", "3", "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    served: psutil.Process | None = None
    try:
        deadline = time.monotonic() + 60
        while served is None and time.monotonic() < deadline:
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            if not _port_free(port):  # the server is up (and answering: the run moved on to its idle baseline)
                served = next((c for c in psutil.Process(run.pid).children() if "http.server" in " ".join(
                    c.cmdline())), None)
            time.sleep(0.2)
        assert served is not None, "the served engine did not start"
        time.sleep(1.0)  # past the readiness check, into the idle baseline
        pgid = os.getpgid(served.pid)
        assert pgid == served.pid != os.getpgid(run.pid)  # its own group
        assert len(_group(pgid)) >= 2  # the server and its child
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 5
        while (_group(pgid) or not _port_free(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group(pgid), "the served engine (or its child) outlived joulescore"
        assert _port_free(port)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if served is not None:
            try:
                os.killpg(served.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_a_normal_end_stops_the_whole_served_group(db: Path, tmp_path: Path) -> None:
    port = free_port()
    marker = f"sleep {100000 + port}"  # a child of the server's, known by its unusual argument
    serve = (f"sh -c '{marker} & exec {sys.executable} -m http.server {port} --bind 127.0.0.1 "
             f"--directory {_static_openai(tmp_path)}'")
    proc = run_against(f"http://127.0.0.1:{port}", db, "--serve", serve)
    assert proc.returncode == 0, proc.stderr  # http.server refuses POST: failed prompts, a finished run
    assert "2 of 2 prompts failed" in proc.stderr and "HTTP 501" in proc.stderr
    assert "running" not in stored(db)[0]
    assert _port_free(port)
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], left


def test_a_served_engine_without_a_model_list_is_an_error_at_once(db: Path, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "empty").mkdir()
    serve = f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {tmp_path / 'empty'}"
    proc = cli("run", "--backend", "openai", "--serve", serve, "--endpoint", f"http://127.0.0.1:{port}", "--limit",
               "1", db=db, timeout=60)  # not the three minutes a server gets to load
    assert_one_line_error(proc, "answered GET /v1/models with HTTP 404", "is it an OpenAI-compatible server?")
    assert runs_stored(db) == 0
    assert _port_free(port)  # stopped on the way out


@pytest.mark.parametrize("leftover", ["listening socket", "answering server"])
def test_serve_refuses_a_port_that_is_already_taken(server: Misbehaving, db: Path, tmp_path: Path,
                                                    leftover: str) -> None:
    if leftover == "listening socket":
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
    else:
        port = server.server_address[1]  # a leftover that answers like a real engine
    serve = f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {_static_openai(tmp_path)}"
    try:
        proc = run_against(f"http://127.0.0.1:{port}", db, "--serve", serve)
    finally:
        if leftover == "listening socket":
            taken.close()
    assert_one_line_error(proc, f"port {port} is already in use", "leftover from an interrupted run",
                          "stop it or choose another port")
    assert runs_stored(db) == 0 and server.behaviour.chats == 0
