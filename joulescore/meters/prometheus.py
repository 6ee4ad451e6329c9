"""``--meter prometheus``: energy counters as Prometheus stored them, read through its HTTP API.

A range selector (``metric{...}[60s]``) at an instant query returns the raw
samples with their scrape timestamps, so the counter is interpolated between
real samples, never between Prometheus's evaluation steps.  The resolution is
the scrape interval seen (15-60 s is usual).  A window's energy waits for the
first sample past its end (``ScrapedMeter.measurement``).
"""

from __future__ import annotations

import math
import time

from joulescore.errors import BadInput
from joulescore.meters.base import MeterStatus
from joulescore.meters.presets import promql
from joulescore.meters.scraped import Sample, ScrapedMeter, need, series_key
from joulescore.model.scrape import ScrapeOptions

#: the first query looks this far back: enough samples to see the scrape interval and a stale series
LOOKBACK_S = 300
TIMEOUT_S = 10.0


class PrometheusMeter(ScrapedMeter):
    """Energy counters from a Prometheus server's stored samples."""

    name = "prometheus"
    source_name = "Prometheus"

    def __init__(self, options: ScrapeOptions | None = None) -> None:
        need("httpx")
        import httpx

        options = options or ScrapeOptions()
        self._client = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        super().__init__(options, options.prometheus_url, "--prometheus-url")

    def _window_s(self, now: float) -> int:
        if not self.series:
            return LOOKBACK_S
        oldest_newest = min(s.times_s[-1] for s in self.series.values() if not s.vanished) \
            if any(not s.vanished for s in self.series.values()) else now - LOOKBACK_S
        return max(2, math.ceil(now - oldest_newest) + 2)

    def fetch(self) -> list[Sample]:
        """The raw samples since the newest one already held (the last five minutes at first)."""
        import httpx

        now = time.time()
        query = promql(self.preset, self.query, self.options.selector, self._window_s(now))
        try:
            resp = self._client.get(f"{self.url}/api/v1/query", params={"query": query, "time": f"{now:.3f}"})
        except httpx.HTTPError as exc:
            raise BadInput(f"Prometheus {self.url} is unreachable: {exc or type(exc).__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            raise BadInput(f"{self.url} is not a Prometheus server: HTTP {resp.status_code} without JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", f"HTTP {resp.status_code}") if isinstance(body, dict) else resp.status_code
            raise BadInput(f"Prometheus {self.url} refused the query {query}: {error}")
        data = body.get("data") or {}
        if data.get("resultType") != "matrix":
            raise BadInput(f"Prometheus {self.url} answered {data.get('resultType')} for {query}, not samples")
        samples: list[Sample] = []
        for result in data.get("result") or []:
            labels = {k: str(v) for k, v in (result.get("metric") or {}).items()}
            metric = labels.pop("__name__", self.preset.metrics[0][0])
            key = series_key(metric, labels)
            for t_s, value in result.get("values") or []:
                v = float(value)
                if math.isfinite(v):
                    samples.append((key, metric, labels, float(t_s), v))
        return samples


def status() -> MeterStatus:
    return MeterStatus("prometheus", False, "give --prometheus-url URL and --preset (dcgm, kepler-pod, kepler-node, "
                       "node-rapl) or --query", ("gpu", "cpu", "dram"),
                       "Prometheus's scrape interval (15-60 s usual)", "measured")
