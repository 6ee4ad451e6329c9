"""A background thread that calls one function at a fixed interval.

Used where a counter must be read often enough not to miss a wrap (RAPL), where
power must be integrated over time (NVML polling, GPU utilisation), and for the
optional power timeline of the Python API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Poller:
    """Calls ``tick`` every ``interval_s`` seconds on a daemon thread until stopped.

    Restartable: ``start`` after ``stop`` begins a new thread.  An exception in
    ``tick`` stops the thread and is kept in ``error`` so the owner can report it
    rather than silently losing samples.
    """

    def __init__(self, interval_s: float, tick: Callable[[], None], name: str = "joulescore-poller") -> None:
        if interval_s <= 0:
            raise ValueError(f"poll interval must be positive, got {interval_s}")
        self.interval_s = interval_s
        self._tick = tick
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self._name, daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self._tick()
            except BaseException as exc:
                self.error = exc
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, 2 * self.interval_s))
        self._thread = None


class Polled:
    """``start``/``stop`` for an owner that samples in the background only when it needs to (``_poller`` None:
    nothing runs, and both are no-ops)."""

    _poller: Poller | None = None

    def start(self) -> None:
        if self._poller is not None:
            self._poller.start()

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.stop()
