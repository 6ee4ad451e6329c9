"""The OpenAI-compatible engine against a real llama-cpp-python server on loopback."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import assert_one_line_error, cli

pytest.importorskip("uvicorn", reason="llama-cpp-python[server] dependencies are not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(gguf: Path, port: int) -> list[str]:
    # interrupt_requests off: by default a new request cuts the stream in flight short
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "1024", "--n_threads", "2", "--interrupt_requests", "False"]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError("server not ready in time")


@pytest.mark.slow
def test_served_engine_is_measured_and_stopped(db: Path, smollm2_gguf: Path) -> None:
    port = free_port()
    command = " ".join(server_command(smollm2_gguf, port))
    proc = cli("run", "--backend", "openai", "--endpoint", f"http://127.0.0.1:{port}", "--serve", command,
               "--concurrency", "2", "--limit", "4", "--warmup", "0", "--max-new-tokens", "4", "--json",
               "--no-progress", db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete" and record["counts"]["succeeded"] == 4
    assert record["counts"]["output_tokens"] == 4 * 4  # min_tokens = max_tokens, honoured by the server
    assert record["batching"]["mode"] == "concurrent" and record["batching"]["batch_size"] == 2
    assert record["latency"]["ttft_s"]["p50"] > 0
    assert any("--serve" in n for n in record["meter"]["notes"])
    with pytest.raises(httpx.HTTPError):  # the server was stopped with the run
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)


@pytest.mark.slow
def test_server_killed_mid_run_gives_failed_prompts_not_a_hang(db: Path, smollm2_gguf: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(server_command(smollm2_gguf, port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, server)
        run = subprocess.Popen(
            [sys.executable, "-m", "joulescore.cli", "run", "--db", str(db), "--backend", "openai", "--endpoint",
             url, "--limit", "40", "--warmup", "0", "--max-new-tokens", "8", "--request-timeout", "20", "--json",
             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= 3:
                        break
            except sqlite3.OperationalError:
                pass
        server.kill()
        stdout, stderr = run.communicate(timeout=120)  # a hang fails here
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    assert run.returncode == 0, stderr
    record = json.loads(stdout)
    counts = record["counts"]
    assert counts["done"] == 40 and counts["succeeded"] >= 3 and counts["failed"] >= 1
    assert counts["succeeded"] + counts["failed"] == 40
    assert "prompts failed" in stderr and ("unreachable" in stderr or "stopped answering" in stderr
                                           or "broken" in stderr)


def test_unreachable_server_is_a_one_line_error(db: Path) -> None:
    proc = cli("run", "--backend", "openai", "--endpoint", f"http://127.0.0.1:{free_port()}", "--limit", "1",
               db=db)
    assert_one_line_error(proc, "cannot reach")
