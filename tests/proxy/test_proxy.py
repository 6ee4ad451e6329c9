"""``joulescore proxy`` in front of a real llama-cpp-python server on loopback, as a user runs it.

One proxy (with ``--serve``, ``--api-key`` and ``--annotate``) serves most
tests; the upstream-killed test starts its own, since it kills the server, and
then checks that the stored parts add up to the meter's total.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import assert_one_line_error, cli

KEY = "sekrit-token"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6, "temperature": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(gguf: Path, port: int) -> str:
    return shlex.join([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                       "--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--interrupt_requests", "False"])


class Running:
    def __init__(self, db: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.proc = subprocess.Popen([sys.executable, "-m", "joulescore.cli", "proxy", "--listen",
                                      f"127.0.0.1:{self.port}", "--db", str(db), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                httpx.get(f"{self.url}/metrics", headers=AUTH, timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("proxy did not start")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        return err


def rows(db: Path, want: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The stored request rows, once there are at least ``want`` (the writer thread stores them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            found = [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY started_unix")]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[Running]:
    db = tmp_path_factory.mktemp("proxy") / "results.db"
    upstream = free_port()
    running = Running(db, "--upstream", f"http://127.0.0.1:{upstream}", "--serve", serve_command(smollm2_gguf, upstream),
                      "--api-key", KEY, "--annotate")
    yield running
    running.stop()


def test_a_whole_answer_carries_its_energy_and_is_stored(proxy: Running) -> None:
    before = len(rows(proxy.db, 0))
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=AUTH, timeout=60)
    assert resp.status_code == 200, resp.text
    assert float(resp.headers["x-joulescore-energy-j"]) > 0
    assert resp.headers["x-joulescore-meter"] in ("measured", "estimated", "mixed")
    assert "x-request-id" in resp.headers  # the upstream's own header came through
    usage = resp.json()["usage"]
    row = next(r for r in rows(proxy.db, before + 1) if r["request_id"] == resp.headers["x-joulescore-request-id"])
    assert (row["status"], row["http_status"], row["streamed"], row["tokens_from"]) == ("ok", 200, 0, "usage")
    assert (row["input_tokens"], row["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row["energy_j"] > 0 and row["low_j"] <= row["energy_j"] <= row["high_j"]
    assert row["meter_kind"] == resp.headers["x-joulescore-meter"]
    assert sum(json.loads(row["domains_json"]).values()) == pytest.approx(row["energy_j"])


def test_a_stream_passes_through_and_ends_with_its_energy(proxy: Running) -> None:
    before = len(rows(proxy.db, 0))
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=CHAT | {"stream": True}, headers=AUTH,
                      timeout=60) as resp:
        assert resp.status_code == 200
        lines = [ln for ln in resp.iter_lines() if ln]
    data = [ln for ln in lines if ln.startswith("data:")]
    assert data[-1] == "data: [DONE]"
    chunks = [json.loads(ln[5:]) for ln in data[:-1]]
    assert all(c["choices"] for c in chunks)  # the usage chunk the proxy asked for is not passed on
    assert lines[-1].startswith(": joulescore energy_j=") and "meter=" in lines[-1]
    row = rows(proxy.db, before + 1)[-1]
    assert row["status"] == "ok" and row["streamed"] == 1 and row["output_tokens"] >= 1
    assert 0 < row["ttft_s"] <= row["duration_s"] and row["energy_j"] > 0
    assert float(lines[-1].split("energy_j=")[1].split()[0]) == pytest.approx(row["energy_j"], rel=1e-4)


def test_four_concurrent_clients_each_get_a_row(proxy: Running) -> None:
    before = len(rows(proxy.db, 0))
    results: list[int] = []

    def client(i: int) -> None:
        body = CHAT | {"stream": i % 2 == 0, "messages": [{"role": "user", "content": f"Count to {i}."}]}
        with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, headers=AUTH, timeout=120) as r:
            r.read()
            results.append(r.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    new = rows(proxy.db, before + 4)[before:]
    assert len(new) == 4 and all(r["status"] == "ok" and r["energy_j"] > 0 for r in new), [(r["status"], r["energy_j"], r["error"], r["streamed"]) for r in new]
    assert len({r["request_id"] for r in new}) == 4


def test_a_client_that_goes_away_mid_stream_leaves_a_closed_row(proxy: Running) -> None:
    before = len(rows(proxy.db, 0))
    body = CHAT | {"stream": True, "max_tokens": 200, "messages": [{"role": "user", "content": "Write a long story."}]}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as resp:
        for line in resp.iter_lines():
            if '"content"' in line:
                break  # the first token came: hang up
    row = rows(proxy.db, before + 1)[-1]
    assert row["status"] == "client_closed" and row["energy_j"] > 0 and 1 <= row["output_tokens"] < 200


def test_metrics_parse_and_count_what_was_served(proxy: Running) -> None:
    httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=AUTH, timeout=60)
    rows(proxy.db, 1)
    text = httpx.get(f"{proxy.url}/metrics", headers=AUTH).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = sum(s.value for s in families["joulescore_requests"].samples if s.name.endswith("_total"))
    energy = [s for s in families["joulescore_request_energy_joules"].samples if s.name.endswith("_total")]
    hist = [s for s in families["joulescore_request_energy_per_request_joules"].samples if s.name.endswith("_count")]
    assert requests >= 1 and sum(s.value for s in energy) > 0
    assert {s.labels["meter_kind"] for s in energy} <= {"measured", "estimated", "mixed"}
    assert sum(s.value for s in hist) == requests
    assert any(s.value > 0 for s in families["joulescore_power_watts"].samples)
    assert sum(s.value for s in families["joulescore_tokens"].samples if s.labels.get("direction") == "output") > 0
    dashboard = (Path(__file__).resolve().parents[2] / "examples" / "grafana-proxy-dashboard.json").read_text()
    shown = set(re.findall(r"joulescore_[a-z_]+", dashboard))
    served = {s.name for f in families.values() for s in f.samples}
    assert shown and shown <= served, shown - served  # the dashboard plots only series the proxy serves


def test_the_api_key_is_enforced_everywhere(proxy: Running) -> None:
    for method, path in (("GET", "/metrics"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
        for headers in ({}, {"authorization": "Bearer wrong"}):
            resp = httpx.request(method, f"{proxy.url}{path}", json=CHAT, headers=headers)
            assert resp.status_code == 401 and resp.json()["error"]["type"] == "invalid_api_key"
    assert httpx.get(f"{proxy.url}/v1/models", headers=AUTH).json()["data"]


def test_requests_lists_and_summarises(proxy: Running) -> None:
    httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=AUTH, timeout=60)
    stored = rows(proxy.db, 1)
    done = cli("requests", "--since", "1h", "--json", db=proxy.db)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    model = report["models"][0]
    assert model["requests"] == len(rows(proxy.db, len(stored)))
    assert model["p50_j"] <= model["p90_j"] and model["j_per_output_token"] > 0
    table = cli("requests", "--since", "30m", db=proxy.db)
    assert table.returncode == 0 and "J/request p50" in table.stdout and "idle share" in table.stdout


class Echo(BaseHTTPRequestHandler):
    """An upstream that answers with the headers it got (what the proxy passed on)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()},
                           "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-upstream-says", "hi")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


def test_headers_pass_through_and_a_down_upstream_is_a_502(tmp_path: Path) -> None:
    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    running = Running(tmp_path / "r.db", "--upstream", f"http://127.0.0.1:{echo.server_address[1]}")
    try:
        sent = {"x-custom": "keep me", "authorization": "Bearer upstream-key", "openai-organization": "org"}
        for path in ("/v1/chat/completions", "/v1/embeddings"):
            resp = httpx.post(f"{running.url}{path}", json=CHAT, headers=sent)
            assert resp.status_code == 200 and resp.headers["x-upstream-says"] == "hi"
            got = resp.json()["headers"]
            assert all(got[k] == v for k, v in sent.items()), got
        echo.shutdown()
        echo.server_close()
        down = httpx.post(f"{running.url}/v1/chat/completions", json=CHAT)
        assert down.status_code == 502 and down.json()["error"]["type"] == "upstream_error"
        assert httpx.get(f"{running.url}/v1/models").status_code == 502
        stored = rows(running.db, 2)
        assert [r["status"] for r in stored] == ["ok", "upstream_error"] and stored[1]["http_status"] == 502
    finally:
        running.stop()


def test_upstream_killed_mid_stream_and_the_parts_add_up(tmp_path: Path, smollm2_gguf: Path) -> None:
    upstream = free_port()
    db = tmp_path / "r.db"
    running = Running(db, "--upstream", f"http://127.0.0.1:{upstream}", "--serve", serve_command(smollm2_gguf, upstream))
    try:
        ok = httpx.post(f"{running.url}/v1/chat/completions", json=CHAT, timeout=60)
        assert ok.status_code == 200
        time.sleep(0.5)  # some idle time between requests
        body = CHAT | {"stream": True, "max_tokens": 300, "messages": [{"role": "user", "content": "A long story."}]}
        server = next(p for p in psutil.Process(running.proc.pid).children(recursive=True)
                      if "llama_cpp.server" in p.cmdline())
        lines, killed = [], False
        with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=body, timeout=60) as resp:
            for line in resp.iter_lines():
                lines.append(line)
                if '"content"' in line and not killed:
                    server.kill()  # our child's child: it stays a zombie until the proxy stops it
                    killed = True
        assert any('"upstream_error"' in ln for ln in lines), lines[-3:]
        stored = rows(db, 2)
        assert [r["status"] for r in stored] == ["ok", "upstream_error"] and stored[1]["energy_j"] > 0
    finally:
        err = running.stop()
    assert running.proc.returncode == 0, err
    with sqlite3.connect(db) as conn:
        total_j, = conn.execute("SELECT total_j FROM proxy_sessions").fetchone()
        parts_j = conn.execute("SELECT SUM(energy_j) FROM requests").fetchone()[0] + \
            conn.execute("SELECT SUM(energy_j) FROM proxy_idle").fetchone()[0]
    assert total_j > 0 and parts_j == pytest.approx(total_j, rel=0.01)


@pytest.mark.parametrize("flags, fragment", [
    (["--upstream", "ftp://x"], "is not an http(s) URL"),
    (["--upstream", "http://127.0.0.1:1", "--listen", "nowhere"], "is not HOST:PORT"),
    (["--upstream", "http://127.0.0.1:1", "--meter", "nope"], "unknown meter"),
    (["--upstream", "http://127.0.0.1:1", "--tick", "0"], "--tick"),
    (["--upstream", "http://127.0.0.1:1", "--api-key", " "], "--api-key is empty"),
])
def test_bad_flags_are_one_line_errors(db: Path, flags: list[str], fragment: str) -> None:
    assert_one_line_error(cli("proxy", *flags, db=db), fragment)


def test_a_taken_port_and_a_bad_since_are_one_line_errors(db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(cli("proxy", "--upstream", "http://127.0.0.1:1", "--listen", f"127.0.0.1:{port}", db=db),
                              "already in use")
    assert_one_line_error(cli("requests", "--since", "1x", db=db), "--since")
