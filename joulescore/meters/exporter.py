"""``--meter exporter``: a DCGM, Kepler or node exporter read directly, in the Prometheus text format.

No Prometheus in between: the exporter is scraped at each read (and every
second in the background, so a wrap between far-apart reads is still seen).
The time resolution is the exporter's own collection interval (DCGM's default
is 30 s), seen as the spacing of the samples whose value changed.
"""

from __future__ import annotations

import time

from joulescore.errors import BadInput
from joulescore.meters.base import MeterStatus
from joulescore.meters.scraped import Sample, ScrapedMeter, keep, need, series_key
from joulescore.model.scrape import ScrapeOptions

#: background scrape: often enough to see a RAPL wrap, rarely enough to cost nothing
POLL_INTERVAL_S = 1.0
TIMEOUT_S = 5.0
#: scrapes before the first figure, to see how often the exporter's values change
WARM_UP_S = 2.0


class ExporterMeter(ScrapedMeter):
    """Energy counters scraped from one exporter's /metrics."""

    name = "exporter"
    source_name = "exporter"
    poll_s = POLL_INTERVAL_S

    def __init__(self, options: ScrapeOptions | None = None) -> None:
        need("httpx")
        need("prometheus_client")
        import httpx

        options = options or ScrapeOptions()
        self._client = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
        super().__init__(options, options.exporter_url, "--exporter-url")
        self._warm_up()

    def _warm_up(self) -> None:
        """A few scrapes before the first figure, so the record states the exporter's update interval
        (or that it is longer than the warm-up: DCGM's 30 s)."""
        deadline = time.monotonic() + WARM_UP_S
        while self.resolution_s() is None and time.monotonic() < deadline:
            time.sleep(0.25)
            self.refresh()
        if self.resolution_s() is None:
            self.min_resolution_s = WARM_UP_S

    def fetch(self) -> list[Sample]:
        """One scrape: every sample of the preset's counters that passes the selector."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        sent = time.time()
        try:
            resp = self._client.get(self.url)
        except httpx.HTTPError as exc:
            raise BadInput(f"exporter {self.url} is unreachable: {exc or type(exc).__name__}") from None
        got = time.time()
        if resp.status_code != 200:
            raise BadInput(f"exporter {self.url} answered HTTP {resp.status_code}")
        wanted = {m for m, _ in self.preset.metrics}
        samples: list[Sample] = []
        try:
            for family in text_string_to_metric_families(resp.text):
                for s in family.samples:
                    # the parser names a counter's samples NAME_total even where the exporter wrote NAME (DCGM)
                    name = s.name if s.name in wanted else s.name.removesuffix("_total")
                    if name in wanted:
                        at = s.timestamp if s.timestamp is not None else (sent + got) / 2
                        samples.append((series_key(name, s.labels), name, dict(s.labels), float(at), float(s.value)))
        except ValueError as exc:
            raise BadInput(f"exporter {self.url} does not answer the Prometheus text format: {exc}") from None
        samples = keep(samples, self.matchers)
        if self.series:
            self.mark_vanished({s[0] for s in samples})
        return samples



def status() -> MeterStatus:
    return MeterStatus("exporter", False, "give --exporter-url URL and --preset (dcgm, kepler-pod, kepler-node, "
                       "node-rapl) or --query", ("gpu", "cpu", "dram"),
                       "the exporter's collection interval (DCGM: 30 s by default)", "measured")
