"""Small stand-in exporters for the scraped meters' tests: threads serving the Prometheus text format.

Each counter rises at a known power from the wall clock, so the energy of any
window is known exactly: power x duration.  A counter may be reset (as an
exporter restart does) or wrap (as a RAPL counter read by the node exporter).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Counter:
    metric: str
    labels: dict[str, str]
    power_w: float
    #: joules per unit of the exposed value (1e-3: mJ as DCGM exposes it)
    unit_j: float = 1.0
    #: the value wraps at this many joules (a RAPL range)
    wrap_j: float | None = None
    #: wall-clock time at which the counter restarts from zero (an exporter restart)
    reset_at_s: float | None = None
    #: joules at the start (a counter since boot is never at zero)
    offset_j: float = 1000.0
    start_s: float = 0.0

    def value(self, now_s: float) -> float:
        since = self.reset_at_s if self.reset_at_s is not None and now_s >= self.reset_at_s else self.start_s
        joules = self.power_w * (now_s - since) + (self.offset_j if since == self.start_s else 0.0)
        if self.wrap_j is not None:
            joules %= self.wrap_j
        return joules / self.unit_j


class Exporter:
    """One HTTP server on a free loopback port whose /metrics lists its counters; stop() closes it."""

    def __init__(self, counters: list[Counter]) -> None:
        now = time.time()
        for c in counters:
            c.start_s = now
        self.counters = counters
        self.served = True
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not owner.served:
                    self.send_error(503)
                    return
                body = owner.text(time.time()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def text(self, now_s: float) -> str:
        lines, typed = [], set()
        for c in self.counters:
            if c.metric not in typed:
                typed.add(c.metric)
                lines.append(f"# TYPE {c.metric} counter")
            labels = ",".join(f'{k}="{v}"' for k, v in c.labels.items())
            lines.append(f"{c.metric}{{{labels}}} {c.value(now_s):.6f}")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dcgm(power_w: float, gpus: int = 1, pod: str = "vllm-0", reset_at_s: float | None = None) -> list[Counter]:
    """DCGM's per-GPU total-energy counter, in mJ, with the pod labels it carries in Kubernetes."""
    return [Counter("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                    {"gpu": str(i), "UUID": f"GPU-{i:04d}", "pod": pod, "namespace": "prod"},
                    power_w, 1e-3, reset_at_s=reset_at_s) for i in range(gpus)]


def kepler_pods(cpu_w: float, gpu_w: float, pods: tuple[str, ...] = ("vllm-0", "other-0")) -> list[Counter]:
    return [Counter(f"kepler_pod_{d}_joules_total", {"pod_name": pod, "pod": pod, "namespace": "prod"}, w)
            for pod in pods for d, w in (("cpu", cpu_w), ("gpu", gpu_w))]


def node_rapl(package_w: float, wrap_j: float) -> list[Counter]:
    """The node exporter's RAPL counters: the package's wraps 2 s after the start, then every wrap_j / package_w."""
    return [Counter("node_rapl_package_joules_total", {"index": "0", "path": "/sys/class/powercap/intel-rapl:0"},
                    package_w, wrap_j=wrap_j, offset_j=wrap_j - 2 * package_w),
            Counter("node_rapl_core_joules_total", {"index": "0"}, package_w / 2, wrap_j=wrap_j)]
