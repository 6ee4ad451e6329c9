"""The proxy's Prometheus metrics, on a registry of its own (``prometheus_client``).

Every energy series carries ``meter_kind`` (measured, estimated or mixed), so a
dashboard never shows an estimate as a measurement.  Request energy and idle
energy are separate counters: their sum is the meter's total.  Requests and
tokens are counted when a request ends; its energy when it is final (once the
requests that overlapped it have ended too).

The ``model`` label comes from clients, so it is bounded: the first
``MAX_MODELS`` names get a series each, later ones are folded into ``other``,
and a name is cut to ``MAX_LABEL_CHARS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from joulescore.meters.base import Domain

#: J per request: a small model's short answer is well under 1 J, a large one's long answer kJ
ENERGY_BUCKETS_J = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, float("inf"))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_MODELS = 50
MAX_LABEL_CHARS = 100
OTHER = "other"


class _Power(Collector):
    """Current power per domain, read from the ledger's last interval when scraped."""

    def __init__(self, power_w: Callable[[], dict[Domain, float]], kind: str) -> None:
        self._power_w, self._kind = power_w, kind

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("joulescore_power_watts", "Power over the meter's last interval",
                                   labels=["domain", "meter_kind"])
        for d, w in self._power_w().items():
            family.add_metric([d.value, self._kind], w)
        return [family]


class _Freshness(Collector):
    """A scraped meter's time resolution and the age of its newest sample: per-request energy is only as fine."""

    def __init__(self, meter: Any) -> None:
        self._meter = meter

    def collect(self) -> list[GaugeMetricFamily]:
        families = []
        resolution_s = self._meter.resolution_s()
        if resolution_s is not None:
            families.append(GaugeMetricFamily("joulescore_meter_resolution_seconds",
                                              "Spacing of the energy counter's samples", value=resolution_s))
        families.append(GaugeMetricFamily("joulescore_meter_staleness_seconds",
                                          "Age of the energy counter's newest sample", value=self._meter.staleness_s()))
        return families


class ProxyMetrics:
    def __init__(self, meter_kind: str, power_w: Callable[[], dict[Domain, float]], meter: Any = None) -> None:
        self.kind = meter_kind
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_energy = Counter("joulescore_request_energy_joules", "Energy charged to requests",
                                      ["model", "domain", "meter_kind"], registry=r)
        self.idle_energy = Counter("joulescore_idle_energy_joules", "Energy while no request was in flight",
                                   ["domain", "meter_kind"], registry=r)
        self.requests = Counter("joulescore_requests", "Requests finished", ["model", "status"], registry=r)
        self.tokens = Counter("joulescore_tokens", "Tokens of finished requests", ["model", "direction"],
                              registry=r)
        self.per_request = Histogram("joulescore_request_energy_per_request_joules", "Energy of one request",
                                     ["model", "meter_kind"], buckets=ENERGY_BUCKETS_J, registry=r)
        self.in_flight = Gauge("joulescore_requests_in_flight", "Requests in flight now", registry=r)
        r.register(_Power(power_w, meter_kind))
        if meter is not None and hasattr(meter, "staleness_s"):  # a scraped meter (joulescore.meters.scraped)
            r.register(_Freshness(meter))
        self._models: set[str] = set()

    def label(self, model: str) -> str:
        """The ``model`` label for a name from the wire: one of at most ``MAX_MODELS`` + 1 values."""
        model = model[:MAX_LABEL_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return OTHER
        self._models.add(model)
        return model

    def ended(self, model: str, status: str, input_tokens: int | None, output_tokens: int) -> None:
        label = self.label(model)
        self.requests.labels(label, status).inc()
        self.tokens.labels(label, "input").inc(input_tokens or 0)
        self.tokens.labels(label, "output").inc(output_tokens)

    def settled(self, model: str, domains: dict[str, float], energy_j: float) -> None:
        label = self.label(model)
        for d, v in domains.items():
            self.request_energy.labels(label, d, self.kind).inc(max(v, 0.0))
        self.per_request.labels(label, self.kind).observe(max(energy_j, 0.0))

    def idle(self, domains: dict[Domain, float]) -> None:
        for d, v in domains.items():
            self.idle_energy.labels(d.value, self.kind).inc(max(v, 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
