"""The Python API for measuring your own code.

    import joulescore
    with joulescore.measure() as m:
        work()
    print(m.result.total_j, m.result.provenance.kind)

    mon = joulescore.Monitor(timeline_interval_s=0.5)
    mon.begin_window("epoch")
    mon.begin_window("step")      # windows may nest and overlap
    ...
    step = mon.end_window("step")
    epoch = mon.end_window("epoch")
    mon.close()

Every window is the difference of two readings of cumulative counters, so
nested windows never disturb each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from joulescore.errors import BadInput
from joulescore.meters.base import Domain, Measurement, Meter, Reading
from joulescore.meters.poller import Poller

TimelinePoint = tuple[float, dict[Domain, float]]


def idle_power_w(meter: Meter, duration_s: float) -> dict[Domain, float]:
    """Average power per domain while nothing runs, read by the same meter as the run."""
    import time

    meter.start()
    try:
        begin = meter.read()
        time.sleep(duration_s)
        end = meter.read()
    finally:
        meter.stop()
    m = meter.measurement(begin, end)
    return {d: e / m.duration_s for d, e in m.energy_j.items()} if m.duration_s > 0 else {}


class Monitor:
    """Named, nestable measurement windows over one meter, plus an optional power timeline."""

    def __init__(self, meter: Meter | str = "auto", timeline_interval_s: float | None = None,
                 sync: Callable[[], None] | None = None) -> None:
        if isinstance(meter, str):
            from joulescore.meters import select_meter

            meter = select_meter(meter)
        self.meter = meter
        self._sync = sync
        self._open: dict[str, Reading] = {}
        self.timeline: list[TimelinePoint] = []
        self._last: Reading | None = None
        self._lock = threading.Lock()
        self.meter.start()
        self._timeline = None
        if timeline_interval_s is not None:
            self._last = self.meter.read()
            self._timeline = Poller(timeline_interval_s, self._sample, name="joulescore-timeline")
            self._timeline.start()

    def _sample(self) -> None:
        """Append (time, average watts per domain since the previous sample)."""
        r = self.meter.read()
        with self._lock:
            prev, self._last = self._last, r
            if prev is None or r.timestamp_s <= prev.timestamp_s:
                return
            dt = r.timestamp_s - prev.timestamp_s
            self.timeline.append((r.timestamp_s, {d: (e - prev.energy_j.get(d, 0.0)) / dt for d, e in r.energy_j.items()}))

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise BadInput(f"window {name!r} is already open")
        self._open[name] = self.meter.read()

    def end_window(self, name: str) -> Measurement:
        """Close a window; the sync hook runs first so queued device work lands inside it."""
        if name not in self._open:
            raise BadInput(f"no open window named {name!r}")
        if self._sync is not None:
            self._sync()
        end = self.meter.read()
        return self.meter.measurement(self._open.pop(name), end, name=name)

    def close(self) -> None:
        if self._timeline is not None:
            self._timeline.stop()
            self._sample()
        self.meter.stop()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class measure:
    """Measure the body of a ``with`` block; ``.result`` is its Measurement afterwards."""

    def __init__(self, meter: Meter | str = "auto", name: str = "measure",
                 timeline_interval_s: float | None = None, sync: Callable[[], None] | None = None) -> None:
        self._args = (meter, timeline_interval_s, sync)
        self.name = name
        self.result: Measurement | None = None
        self.monitor: Monitor | None = None

    @property
    def timeline(self) -> list[TimelinePoint]:
        return self.monitor.timeline if self.monitor else []

    def __enter__(self) -> measure:
        meter, interval, sync = self._args
        self.monitor = Monitor(meter, interval, sync)
        self.monitor.begin_window(self.name)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self.monitor is not None
        try:
            self.result = self.monitor.end_window(self.name)
        finally:
            self.monitor.close()
