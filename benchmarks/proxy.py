"""The metering proxy's cost: the same chat requests sent directly and through ``joulescore proxy``.

A llama-cpp-python server (SmolLM2-135M) answers both.  The requests go 4 at a
time; rounds alternate direct/proxy (and which goes first) so that drift on a
shared machine hits both alike.  Prints throughput, p50/p99 latency, requests
lost, per-request energy, and the stored parts (requests + idle) against the
meter's total over the proxy's session.

    python benchmarks/proxy.py [--requests 200] [--rounds 5] [--max-tokens 8] [--stream]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from joulescore.backends.models import resolve_model
from joulescore.tasks.prompts import load_prompts
from joulescore.tasks.spec import load_spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(f"{url}/v1/models", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def one(client: httpx.Client, url: str, body: dict[str, object], stream: bool) -> tuple[float, bool, float | None]:
    """Latency, whether it was answered, and the energy the proxy reported (None directly)."""
    start = time.perf_counter()
    try:
        if stream:
            with client.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}) as r:
                text = "".join(r.iter_text())
                ok = r.status_code == 200 and "data: [DONE]" in text
                marks = [ln for ln in text.splitlines() if ln.startswith(": joulescore energy_j=")]
                energy = float(marks[0].split("energy_j=")[1].split()[0]) if marks else None
        else:
            r = client.post(f"{url}/v1/chat/completions", json=body)
            ok = r.status_code == 200 and bool(r.json().get("choices"))
            energy = float(r.headers["x-joulescore-energy-j"]) if "x-joulescore-energy-j" in r.headers else None
    except httpx.HTTPError:
        return time.perf_counter() - start, False, None
    return time.perf_counter() - start, ok, energy


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads of the server")
    ap.add_argument("--stream", action="store_true", help="stream the answers (the proxy then --annotate's them)")
    args = ap.parse_args()

    prompts = load_prompts(load_spec("chat"))[0][: args.requests]
    bodies = [{"messages": p.messages, "max_tokens": args.max_tokens, "temperature": 0, "seed": 0} for p in prompts]
    gguf = resolve_model("smollm2-135m").path
    tmp = Path(tempfile.mkdtemp(prefix="jsc-proxy-bench-"))
    db = tmp / "bench.db"
    up_port, px_port = free_port(), free_port()
    direct, proxied = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{px_port}"
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                               "--port", str(up_port), "--n_ctx", "1024", "--n_threads", str(args.threads),
                               "--interrupt_requests", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        wait_up(direct, server)
        proxy = subprocess.Popen([sys.executable, "-m", "joulescore.cli", "proxy", "--upstream", direct, "--listen",
                                  f"127.0.0.1:{px_port}", "--db", str(db), *(["--annotate"] if args.stream else [])],
                                 stderr=subprocess.PIPE, text=True)
        wait_up(proxied, proxy)
        per_round = -(-len(bodies) // args.rounds)
        lat: dict[str, list[float]] = {"direct": [], "proxy": []}
        wall: dict[str, float] = {"direct": 0.0, "proxy": 0.0}
        lost = {"direct": 0, "proxy": 0}
        energies: list[float] = []
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=16)) as client, \
                ThreadPoolExecutor(args.concurrency) as pool:
            for r in range(args.rounds):
                chunk = bodies[r * per_round:(r + 1) * per_round]
                order = [("direct", direct), ("proxy", proxied)]
                for name, url in order if r % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    results = list(pool.map(lambda b, u=url: one(client, u, b, args.stream), chunk))
                    wall[name] += time.perf_counter() - start
                    lat[name] += [x[0] for x in results]
                    lost[name] += sum(not x[1] for x in results)
                    if name == "proxy":
                        energies += [x[2] for x in results if x[2] is not None]
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGINT)
            proxy.communicate(timeout=60)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        total_j, kind = conn.execute("SELECT total_j, meter_kind FROM proxy_sessions").fetchone()
        req_j, n_rows = conn.execute("SELECT SUM(energy_j), COUNT(*) FROM requests").fetchone()
        idle_j = conn.execute("SELECT COALESCE(SUM(energy_j), 0) FROM proxy_idle").fetchone()[0]
        stored = [r[0] for r in conn.execute("SELECT energy_j FROM requests WHERE status='ok'")]
    n = len(bodies)
    report = {
        "requests_per_mode": n, "concurrency": args.concurrency, "max_tokens": args.max_tokens, "stream": args.stream,
        "throughput_rps": {k: n / wall[k] for k in wall},
        "throughput_kept": (n / wall["proxy"]) / (n / wall["direct"]),
        "p50_ms": {k: statistics.median(v) * 1e3 for k, v in lat.items()},
        "p99_ms": {k: pct(v, 99) * 1e3 for k, v in lat.items()},
        "p50_added_ms": (statistics.median(lat["proxy"]) - statistics.median(lat["direct"])) * 1e3,
        "lost": lost, "rows_stored": n_rows,
        "meter_kind": kind,
        "j_per_request_stored": {"p50": statistics.median(stored), "mean": statistics.fmean(stored)} if stored else None,
        "j_per_request_reported_mean": statistics.fmean(energies) if energies else None,
        "requests_j": req_j, "idle_j": idle_j, "meter_total_j": total_j,
        "parts_vs_total_pct": 100 * ((req_j or 0) + idle_j - total_j) / total_j if total_j else None,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
