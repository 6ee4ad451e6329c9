"""Energy counters read from scraped series: an exporter's text format, or Prometheus's stored samples.

A scraped counter is known only at its samples, seconds apart (an exporter's
collection interval, Prometheus's scrape interval).  The value at any other
moment is interpolated linearly between the samples around it; past the
newest sample it is extrapolated at the last interval's rate until a newer
sample comes.  A counter that goes down was reset (the exporter restarted) or
wrapped (RAPL's range): the interval across the break is bridged at the rate
of the interval before it, as RAPL's wraps are corrected, and counted in the
record.  The time resolution (the spacing of the samples that changed) is
stated with every figure.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from abc import abstractmethod
from bisect import bisect_left
from dataclasses import dataclass, field

from joulescore.errors import BadInput, MeterUnavailable
from joulescore.meters.base import Domain, Measurement, Meter, Provenance, Reading, now_s
from joulescore.meters.poller import Polled, Poller
from joulescore.meters.presets import Preset, matches, parse_selector, selection
from joulescore.model.scrape import ScrapeOptions

#: a series whose newest sample is older than this many resolutions is stale
STALE_RESOLUTIONS = 4.0
#: ... and never before this many seconds (a loaded machine delays a 1 s scrape)
MIN_STALE_S = 3.0
#: samples kept per series: days of 1 s samples are not needed, a run's edges are recent
MAX_SAMPLES = 20_000
#: the source is asked at most this often; reads in between interpolate what is held
MIN_REFRESH_S = 0.2
#: a long-running reader's background refresh
BACKGROUND_S = 0.5
#: one raw sample: (series key, metric, labels, wall-clock seconds, value in the counter's unit)
Sample = tuple[str, str, dict[str, str], float, float]


def need(module: str) -> None:
    """The scraped meters' HTTP client and parser come with the proxy's extra; without them, say so in one line."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MeterUnavailable(f"reading scraped counters needs {module}: pip install 'joulescore[proxy]'")


def series_key(metric: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


@dataclass
class CounterSeries:
    """One counter's samples as joules since its first sample, resets and wraps bridged."""

    key: str
    metric: str
    labels: dict[str, str]
    domain: Domain
    j_per_unit: float
    times_s: list[float] = field(default_factory=list)
    totals_j: list[float] = field(default_factory=list)
    #: wall-clock times at which the raw value changed (an exporter may repeat a value between collections)
    changes_s: list[float] = field(default_factory=list)
    last_raw: float = 0.0
    breaks: int = 0
    vanished: bool = False

    def add(self, t_s: float, raw: float) -> None:
        """Fold one sample in; an older or repeated timestamp is ignored."""
        if self.times_s and t_s <= self.times_s[-1]:
            return
        if not self.times_s:
            self.times_s.append(t_s)
            self.totals_j.append(0.0)
            self.changes_s.append(t_s)
            self.last_raw = raw
            return
        delta_j = (raw - self.last_raw) * self.j_per_unit
        if delta_j < 0:  # reset or wrap: bridged at the previous rate (else counted from zero)
            self.breaks += 1
            rate = self.rate_w()
            delta_j = rate * (t_s - self.times_s[-1]) if rate is not None else max(raw * self.j_per_unit, 0.0)
        if raw != self.last_raw:
            self.changes_s.append(t_s)
        self.times_s.append(t_s)
        self.totals_j.append(self.totals_j[-1] + delta_j)
        self.last_raw = raw
        if len(self.times_s) > MAX_SAMPLES:
            del self.times_s[: MAX_SAMPLES // 2], self.totals_j[: MAX_SAMPLES // 2]
            del self.changes_s[: max(0, len(self.changes_s) - MAX_SAMPLES // 2)]

    def rate_w(self) -> float | None:
        """Power over the newest interval, or None with fewer than two samples."""
        if len(self.times_s) < 2:
            return None
        return (self.totals_j[-1] - self.totals_j[-2]) / (self.times_s[-1] - self.times_s[-2])

    def at(self, t_s: float) -> float:
        """Joules at a moment: interpolated between samples, extrapolated past the newest (not if vanished)."""
        times, totals = self.times_s, self.totals_j
        if not times or t_s <= times[0]:
            return 0.0
        if t_s >= times[-1]:
            rate = None if self.vanished else self.rate_w()
            return totals[-1] + (rate * (t_s - times[-1]) if rate is not None else 0.0)
        i = bisect_left(times, t_s)
        t0, t1 = times[i - 1], times[i]
        return totals[i - 1] + (totals[i] - totals[i - 1]) * (t_s - t0) / (t1 - t0)

    def resolution_s(self) -> float | None:
        """The spacing of the samples that changed (the exporter's own collection interval shows here)."""
        gaps = [b - a for a, b in zip(self.changes_s, self.changes_s[1:])][-50:]
        return statistics.median(gaps) if gaps else None


class ScrapedMeter(Polled, Meter):
    """Cumulative per-domain energy from scraped counters: the common part of the exporter and Prometheus meters."""

    #: what the source is called in errors and the record
    source_name = "scrape"
    #: a background refresh this often (an exporter's: a wrap between far-apart reads is still seen)
    poll_s: float | None = None

    def __init__(self, options: ScrapeOptions, url: str | None, flag_url: str) -> None:
        other = [f for f in options.given() if f.endswith("-url") and f != flag_url]
        if other:
            raise BadInput(f"{other[0]} does not apply to --meter {self.name}; give {flag_url}")
        if not url:
            raise BadInput(f"--meter {self.name} needs {flag_url} URL")
        self.url = url.rstrip("/")
        self.options = options
        self.preset, self.query = selection(options, flag_url)
        labels = self.query.partition("{")[2].rpartition("}")[0] if self.query else options.selector
        self.matchers = parse_selector(labels)
        self._domains = dict(self.preset.metrics)
        self.series: dict[str, CounterSeries] = {}
        self.warnings: list[str] = []
        self.failures = 0
        #: where no resolution has been seen yet: how long it is at least (an exporter's warm-up)
        self.min_resolution_s: float | None = None
        self._lock = threading.Lock()
        # readings are stamped with now_s() (monotonic); samples with the wall clock
        self._wall_offset_s = time.time() - now_s()
        self._started = False
        self._absorb(self.fetch())
        self._started = True
        self._fetched_s = time.monotonic()
        self._check_start()
        # a long-running reader (the proxy) reads from the event loop: the source is asked in the background only
        interval = self.poll_s if self.poll_s is not None else BACKGROUND_S if options.keep_going else None
        self._poller = Poller(interval, self.refresh, name=f"joulescore-{self.name}") if interval else None

    @abstractmethod
    def fetch(self) -> list[Sample]:
        """New samples from the source; a failure is a one-line BadInput naming the source."""

    def wall_s(self, t_s: float) -> float:
        return t_s + self._wall_offset_s

    def _absorb(self, samples: list[Sample]) -> None:
        """Fold samples in; a series that appears after the start is a warning in the record."""
        for key, metric, labels, t_s, raw in samples:
            s = self.series.get(key)
            if s is None:
                s = CounterSeries(key, metric, labels, self._domains.get(metric, Domain.SYSTEM), self._unit_j())
                if self._started and len(self.warnings) < 20:
                    self.warnings.append(f"series {key} appeared mid-run; counted from its first sample")
                self.series[key] = s
            s.add(t_s, raw)

    def _unit_j(self) -> float:
        from joulescore.meters.presets import UNITS_J

        return UNITS_J[self.preset.unit]

    def _check_start(self) -> None:
        """No series, too many series, or a stale one: each a one-line error before anything runs."""
        what = self.query or f"preset {self.preset.name}" + (f" with {self.options.selector}" if self.options.selector
                                                           else "")
        if not self.series:
            raise BadInput(f"{self.source_name} {self.url} has no series for {what}")
        for metric, _ in self.preset.metrics:
            found = [s for s in self.series.values() if s.metric == metric]
            hosts = {s.labels.get("instance", "") for s in found}
            if len(found) > 1 and (not self.preset.several or len(hosts) > 1):
                listed = "; ".join(s.key for s in found[:3]) + ("; ..." if len(found) > 3 else "")
                raise BadInput(f"{self.source_name} {self.url} has {len(found)} series of {metric} for {what} where "
                               f"one was expected ({listed}); narrow it with --selector")
        self.check_stale(time.time())

    def stale_after_s(self) -> float:
        res = self.resolution_s()
        return max(MIN_STALE_S, STALE_RESOLUTIONS * res) if res is not None else MIN_STALE_S * 10

    def check_stale(self, wall_now_s: float, started: bool = False) -> None:
        """A stale series is an error; once started, one that stops while others go on has vanished (a warning)."""
        limit = self.stale_after_s()
        live = [s for s in self.series.values() if not s.vanished]
        old = [s for s in live if wall_now_s - s.times_s[-1] > limit]
        if old and (not started or len(old) == len(live)):
            age_s = wall_now_s - old[0].times_s[-1]
            raise BadInput(f"{self.source_name} {self.url}: series {old[0].key} is stale, its newest sample is "
                           f"{age_s:.0f} s old (resolution {self.resolution_s() or 0:.3g} s)")
        for s in old:
            self._vanish(s)

    def _vanish(self, s: CounterSeries) -> None:
        s.vanished = True
        if len(self.warnings) < 20:
            self.warnings.append(f"series {s.key} vanished mid-run; its energy after that is not counted")

    def resolution_s(self) -> float | None:
        """The coarsest series' sample spacing: the time resolution of every figure."""
        found = [r for r in (s.resolution_s() for s in self.series.values()) if r is not None]
        return max(found) if found else None

    def staleness_s(self) -> float:
        """Age of the oldest live series' newest sample, now."""
        live = [s.times_s[-1] for s in self.series.values() if not s.vanished]
        return max(0.0, time.time() - min(live)) if live else 0.0

    def _value(self, wall: float) -> tuple[dict[Domain, float], dict[str, float]]:
        energy: dict[Domain, float] = {}
        detail: dict[str, float] = {}
        for s in self.series.values():
            j = s.at(wall)
            energy[s.domain] = energy.get(s.domain, 0.0) + j
            detail[f"{s.domain.value}:{s.key}"] = j
        return energy, detail

    def refresh(self) -> None:
        """New samples, at most every ``MIN_REFRESH_S`` (the proxy reads at every request event)."""
        with self._lock:
            if time.monotonic() - self._fetched_s < MIN_REFRESH_S:
                return
            self._fetched_s = time.monotonic()
            try:
                self._absorb(self.fetch())
                self.check_stale(time.time(), started=True)
            except BadInput as exc:
                if not self.options.keep_going:
                    raise
                self.failures += 1
                if self.failures == 1:
                    self.warnings.append(f"first failed scrape: {exc}")

    def read(self) -> Reading:
        """The counters now: interpolated, or extrapolated past the newest sample until one comes (``revise``).

        Stamped before the source is asked, so an exporter's answer is already a sample past it."""
        t = now_s()
        if not self.options.keep_going:
            self.refresh()
        with self._lock:
            energy, detail = self._value(self.wall_s(t))
        return Reading(t, energy, dict(energy), dict(energy), detail)

    def settle(self, t_s: float, timeout_s: float | None = None) -> None:
        """Wait for a sample past ``t_s`` in every live series; one that never comes is stale (an error)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.settled_until_s() < t_s:
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(min(0.25, (self.resolution_s() or 1.0) / 4))
            self.refresh()

    def settled_until_s(self) -> float:
        """The newest moment every live series has a sample past (readings before it are final)."""
        with self._lock:
            live = [s.times_s[-1] for s in self.series.values() if not s.vanished]
        return min(live) - self._wall_offset_s if live else math.inf

    def revise(self, reading: Reading) -> Reading:
        """The reading interpolated from the samples held now (final once ``settled_until_s`` is past it)."""
        with self._lock:
            energy, detail = self._value(self.wall_s(reading.timestamp_s))
        return Reading(reading.timestamp_s, energy, dict(energy), dict(energy), detail)

    def wait_settled(self, t_s: float, timeout_s: float) -> None:
        self.settle(t_s, timeout_s)

    def measurement(self, begin: Reading, end: Reading, name: str = "") -> Measurement:
        """The window's energy once a sample past its end has come: both edges interpolated, none extrapolated."""
        self.settle(end.timestamp_s)
        with self._lock:
            e0, d0 = self._value(self.wall_s(begin.timestamp_s))
            e1, d1 = self._value(self.wall_s(end.timestamp_s))
        diff = {d: v - e0.get(d, 0.0) for d, v in e1.items()}
        return Measurement(end.timestamp_s - begin.timestamp_s, diff, dict(diff), dict(diff), self.provenance(),
                           name, {k: v - d0.get(k, 0.0) for k, v in d1.items()})

    def domains(self) -> frozenset[Domain]:
        return frozenset(s.domain for s in self.series.values())

    def mark_vanished(self, present: set[str]) -> None:
        """Series not in the newest scrape stop counting; each is a warning in the record."""
        for s in self.series.values():
            if s.key not in present and not s.vanished:
                self._vanish(s)

    def source_label(self) -> str:
        return f"{self.preset.source or self.preset.name} via {self.source_name} {self.url}"

    def provenance(self) -> Provenance:
        seen = self.resolution_s()
        res = seen if seen is not None else self.min_resolution_s
        res_text = f"{seen:.3g} s" if seen is not None else "not yet seen" if res is None else \
            f"over {res:.3g} s (no two changes seen yet)"
        notes = [f"time resolution {res_text}: per-prompt, per-request and prefill/decode figures are interpolated "
                 "between samples (extrapolated at the last rate past the newest one)",
                 *(f"{s.key}: {s.breaks} reset(s)/wrap(s) bridged at the previous rate"
                   for s in self.series.values() if s.breaks),
                 *self.warnings]
        if self.query is not None:
            notes.append(f"query: {self.query}")
        if self.preset.attributed:
            notes.append(f"measured-and-attributed: {self.preset.attributed}")
        if self._poller is not None and self._poller.error is not None:
            notes.append(f"background scrape stopped early ({self._poller.error}): a wrap after that may be missed")
        domains = {}
        for d in sorted({s.domain for s in self.series.values()}, key=lambda d: d.value):
            info = {"kind": "measured", "source": self.source_label()}
            if res is not None:
                info["resolution_s"] = f"{res:.4g}"
            if self.preset.attributed:
                info["attribution"] = self.preset.attributed
            domains[d.value] = info
        return Provenance(
            kind="measured",
            sources=(self.source_label(),),
            includes=tuple(f"{s.domain.value}: {s.key}" for s in self.series.values()),
            uncertainty_pct=0.0,
            notes=tuple(notes),
            domains=domains,
        )


def keep(samples: list[Sample], matchers: list[tuple[str, str, str]]) -> list[Sample]:
    """The samples whose labels pass the selector."""
    return [s for s in samples if matches(s[2], matchers)]


__all__ = ["CounterSeries", "Preset", "Sample", "ScrapedMeter", "keep", "series_key"]
