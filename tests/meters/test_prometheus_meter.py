"""The scraped meters against a real Prometheus (Debian's package) scraping stand-in exporters every second.

Each stand-in counter rises at a known power, so a window's energy is known:
power x duration, within the stated time resolution.  Prometheus is started
once for the module on a free loopback port with a generated config.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import assert_one_line_error, cli, cli_in_process
from scrape_exporters import Exporter, dcgm, kepler_pods, node_rapl

GPU_W = 50.0
CPU_W, POD_GPU_W = 7.0, 30.0
PACKAGE_W, WRAP_J = 40.0, 320.0  # wraps every 8 s: several since the exporter started, none missed by a late scrape
PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.exporters = {"dcgm": Exporter(dcgm(GPU_W, gpus=2)), "reset": Exporter(dcgm(GPU_W)),
                          "kepler": Exporter(kepler_pods(CPU_W, POD_GPU_W)),
                          "rapl": Exporter(node_rapl(PACKAGE_W, WRAP_J)), "gone": Exporter(dcgm(GPU_W))}
        jobs = "".join(f"  - job_name: {job}\n    static_configs: [{{targets: ['127.0.0.1:{e.port}']}}]\n"
                       for job, e in self.exporters.items())
        config = tmp / "prometheus.yml"
        config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{jobs}")
        self.url = f"http://127.0.0.1:{_free_port()}"
        assert PROMETHEUS is not None
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout_s: float = 40.0) -> None:
        """Until every job has at least three samples (a resolution can be seen)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            try:
                got = httpx.get(f"{self.url}/api/v1/query", timeout=2,
                                params={"query": "count_over_time(up[1m])"})
                counts = {r["metric"]["job"]: float(r["value"][1]) for r in got.json()["data"]["result"]}
                if len(counts) == len(self.exporters) and min(counts.values()) >= 3:
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.3)
        pytest.fail("Prometheus did not scrape the stand-in exporters in time")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        for e in self.exporters.values():
            if e.served:
                e.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus is not installed here (.ci/run installs it as root: apt-get install prometheus)")
    c = Cluster(tmp_path_factory.mktemp("prometheus"))
    try:
        c.wait_ready()
        c.exporters["gone"].stop()  # its series goes stale while the tests run
        c.exporters["gone"].served = False
        yield c
    finally:
        c.close()


def _prom(c: Cluster, *args: str) -> list[str]:
    return ["--meter", "prometheus", "--prometheus-url", c.url, *args]


def _measure(*args: str, seconds: float = 2.0) -> dict[str, object]:
    proc = cli("measure", *args, "--json", "--", "sleep", str(seconds))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert isinstance(report, dict)
    return report


def _resolution_s(report: dict[str, object]) -> float:
    notes = report["provenance"]["notes"]  # type: ignore[index]
    first = next(n for n in notes if n.startswith("time resolution"))
    return float(first.split()[2])


def test_measure_dcgm_through_prometheus_is_power_times_duration(cluster: Cluster) -> None:
    report = _measure(*_prom(cluster, "--preset", "dcgm", "--selector", 'job="dcgm"'))
    duration_s, gpu_j = report["duration_s"], report["energy_j"]["gpu"]  # type: ignore[index]
    res = _resolution_s(report)
    assert 0.5 <= res <= 5.0
    # two GPUs at GPU_W each; both edges are interpolated between samples of a constant rate
    assert gpu_j == pytest.approx(2 * GPU_W * duration_s, abs=2 * GPU_W * 0.05 * res + 1.0)
    assert report["provenance"]["kind"] == "measured"  # type: ignore[index]
    assert len(report["detail_j"]) == 2  # type: ignore[arg-type]  # each GPU listed by its labels


def test_kepler_pod_keeps_cpu_and_gpu_apart_and_says_attributed(cluster: Cluster) -> None:
    report = _measure(*_prom(cluster, "--preset", "kepler-pod", "--selector", 'job="kepler",pod="vllm-0"'))
    energy, duration_s = report["energy_j"], report["duration_s"]
    assert energy["cpu"] == pytest.approx(CPU_W * duration_s, rel=0.1, abs=0.5)  # type: ignore[index]
    assert energy["gpu"] == pytest.approx(POD_GPU_W * duration_s, rel=0.1, abs=0.5)  # type: ignore[index]
    assert any("measured-and-attributed: Kepler" in n for n in report["provenance"]["notes"])  # type: ignore[index]


def test_node_rapl_wraps_are_bridged(cluster: Cluster) -> None:
    report = _measure(*_prom(cluster, "--preset", "node-rapl", "--selector", 'job="rapl"'), seconds=4.0)
    cpu_j, duration_s = report["energy_j"]["cpu"], report["duration_s"]  # type: ignore[index]
    assert cpu_j == pytest.approx(PACKAGE_W * duration_s, rel=0.1)
    assert any("wrap" in n for n in report["provenance"]["notes"])  # type: ignore[index]
    assert "dram" not in report["energy_j"] and len(report["detail_j"]) == 1  # type: ignore[operator, arg-type]


def test_reset_mid_run_is_handled_not_an_error(cluster: Cluster) -> None:
    counter = cluster.exporters["reset"].counters[0]
    counter.reset_at_s = time.time() + 2.5  # after the measure command has started and read its first figure
    report = _measure(*_prom(cluster, "--preset", "dcgm", "--selector", 'job="reset"'), seconds=4.0)
    assert any("reset" in n for n in report["provenance"]["notes"])  # type: ignore[index]
    assert report["energy_j"]["gpu"] == pytest.approx(GPU_W * report["duration_s"], rel=0.15)  # type: ignore[index]


def test_exporter_meter_reads_the_exporter_directly(cluster: Cluster) -> None:
    report = _measure("--meter", "exporter", "--exporter-url", cluster.exporters["dcgm"].url, "--preset", "dcgm")
    assert report["energy_j"]["gpu"] == pytest.approx(2 * GPU_W * report["duration_s"], rel=0.05)  # type: ignore[index]
    assert "via exporter" in report["provenance"]["sources"][0]  # type: ignore[index]


@pytest.mark.parametrize(("args", "fragment"), [
    (("--prometheus-url", "http://127.0.0.1:9", "--preset", "dcgm"), "is unreachable"),
    (("--query", "no_such_counter_joules_total"), "has no series"),
    (("--preset", "dcgm"), "where one was expected"),  # two jobs' DCGM series: two hosts, not summed
    (("--preset", "kepler-pod", "--selector", 'job="kepler"'), "where one was expected"),
    (("--preset", "dcgm", "--selector", 'job="gone"'), "is stale"),
])
def test_scrape_errors_are_one_line(cluster: Cluster, args: tuple[str, ...], fragment: str) -> None:
    url = () if "--prometheus-url" in args else ("--prometheus-url", cluster.url)
    run = cli if fragment == "is unreachable" else cli_in_process
    proc = run("measure", "--meter", "prometheus", *url, *args, "--", "true")
    assert_one_line_error(proc, fragment)


def test_scrape_flags_belong_to_the_scraped_meters(cluster: Cluster) -> None:
    assert_one_line_error(cli_in_process("measure", "--meter", "estimator", "--preset", "dcgm", "--", "true"),
                          "--preset applies only to --meter prometheus or --meter exporter")
    assert_one_line_error(cli_in_process("measure", "--meter", "exporter", "--prometheus-url", cluster.url,
                                         "--preset", "dcgm", "--", "true"), "--prometheus-url does not apply")
    assert_one_line_error(cli_in_process("measure", *_prom(cluster, "--preset", "dcgm", "--unit", "kWh"), "--", "true"),
                          "--unit 'kWh' is not a unit of energy")


@pytest.mark.parametrize("through", ["prometheus", "exporter"])
def test_run_rates_the_known_power(cluster: Cluster, db: Path, through: str) -> None:
    meter = _prom(cluster) if through == "prometheus" else \
        ["--meter", "exporter", "--exporter-url", cluster.exporters["dcgm"].url, "--split-phases"]
    proc = cli("run", *meter, "--preset", "dcgm", "--selector", 'job="dcgm",gpu="0"' if through == "prometheus"
               else 'gpu="0"', "--limit", "2", "--warmup", "0", "--json", "--no-progress", db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    duration_s = record["duration_s"]  # the prompts' windows, which the rows' energy covers
    # each prompt's edges are interpolated between samples of a constant rate, once a sample past its end came
    assert record["energy"]["gpu_j"] == pytest.approx(GPU_W * duration_s, rel=0.02, abs=0.2)
    notes = record["meter"]["notes"]
    assert any(n.startswith("time resolution") for n in notes)
    # the split is withheld where the samples are further apart than a prefill lasts, unless asked for
    res_s = float(record["meter"]["per_domain"]["gpu"]["resolution_s"])
    withheld = any(n.startswith("prefill/decode split withheld") for n in notes)
    ttft_s = record["latency"]["ttft_s"]["p50"]  # close to the median prefill the rule reads, not equal to it
    if through == "exporter":  # --split-phases
        assert not withheld
    elif res_s > 2 * ttft_s or res_s < ttft_s / 2:  # clear of the edge on a loaded machine
        assert withheld == (res_s > ttft_s)
    assert (record["phase_split"]["prefill_pct"] is None) == withheld


def test_phases_are_withheld_from_a_meter_coarser_than_them() -> None:
    from joulescore.model.sections import Meter
    from joulescore.store.record import phases_withheld
    from joulescore.store.rows import ResultRow

    def row(prefill_s: float) -> ResultRow:
        return ResultRow(prompt_index=0, prompt_id="p", ok=True, error=None, finish_reason="length", input_tokens=5,
                         output_tokens=10, prefill_s=prefill_s, decode_s=0.5, prefill_j=1.0, decode_j=2.0, low_j=3.0,
                         high_j=3.0, domains={"gpu": 3.0}, text="")

    coarse = Meter(kind="measured", per_domain={"gpu": {"kind": "measured", "resolution_s": "30"}})
    note = phases_withheld(coarse, False, [row(0.05), row(0.07)])
    assert note is not None and "30 s apart" in note and "--split-phases" in note
    assert phases_withheld(coarse, True, [row(0.05)]) is None
    fine = Meter(kind="measured", per_domain={"gpu": {"resolution_s": "0.01"}})
    assert phases_withheld(fine, False, [row(0.05)]) is None
    assert phases_withheld(Meter(kind="measured"), False, [row(0.05)]) is None  # a local counter: always split


def test_proxy_shares_the_counter_difference_among_requests_and_idle(cluster: Cluster, tmp_path: Path) -> None:
    import proxy_upstream

    server, _ = proxy_upstream.start()
    port, db = _free_port(), tmp_path / "r.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "joulescore.cli", "proxy", "--listen", f"127.0.0.1:{port}", "--db", str(db),
         "--upstream", f"http://127.0.0.1:{server.server_address[1]}",
         *_prom(cluster, "--preset", "dcgm", "--selector", 'job="dcgm",gpu="0"')],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            try:
                httpx.get(f"{base}/metrics", timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{base}/v1/chat/completions", json=chat | {"model": "slow-1", "stream": True},
                          timeout=30).status_code == 200
        time.sleep(0.5)  # idle between the requests
        assert httpx.post(f"{base}/v1/chat/completions", json=chat | {"model": "plain"}, timeout=30).status_code == 200
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert "joulescore_meter_resolution_seconds" in metrics and "joulescore_meter_staleness_seconds" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        server.shutdown()
    assert proc.returncode == 0, err
    with sqlite3.connect(db) as conn:
        total_j, = conn.execute("SELECT total_j FROM proxy_sessions").fetchone()
        requests_j, count, requests_s = conn.execute("SELECT SUM(energy_j), COUNT(*), SUM(duration_s) FROM requests"
                                                     ).fetchone()
        idle_j, idle_s = conn.execute("SELECT SUM(energy_j), SUM(duration_s) FROM proxy_idle").fetchone()
    assert count == 2 and requests_j > 0 and idle_j > 0
    assert requests_j + idle_j == pytest.approx(total_j, rel=1e-9)  # every joule in one place
    # the session's time is idle or in a request (one at a time); the proxy's own timing differs by moments
    assert total_j == pytest.approx(GPU_W * (requests_s + idle_s), abs=GPU_W * 0.5)
    assert requests_j / requests_s == pytest.approx(GPU_W, rel=0.2)
