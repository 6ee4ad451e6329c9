"""A run's stop request: the first Ctrl-C or SIGTERM stops it cleanly, later ones wait for what is being stored."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Stop:
    """The stop request of a run in hand: the first Ctrl-C (or SIGTERM) sets it, later ones are ignored.

    The handler raises KeyboardInterrupt as well, to cut short the prompt in flight.  That exception can
    be lost: llama.cpp calls a Python log hook from C while it loads a model, and an exception raised in
    such a ctypes callback is dropped.  So the flag is also checked after loading and between prompts.
    While ``held`` (storing), the handler only sets the flag.
    """

    def __init__(self) -> None:
        self.requested = False
        self._holding = False

    def __call__(self) -> bool:
        return self.requested

    def check(self) -> None:
        """Stop here if a stop was asked for, even if its KeyboardInterrupt was swallowed."""
        if self.requested:
            raise KeyboardInterrupt

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            return
        self.requested = True
        if not self._holding:
            raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        """A short step that must not be cut in two (a run's row, its final status): a stop waits for it."""
        holding, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = holding


@contextmanager
def stopping() -> Iterator[Stop]:
    """Route SIGINT and SIGTERM to a ``Stop`` for the run (in the main thread, where signals land).

    Inside another ``stopping`` (the CLI holds one until its message is printed) the outer one is
    shared, so a Ctrl-C already seen keeps later ones ignored up to the end.
    """
    current = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    if isinstance(current, Stop):
        yield current
        return
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, stop.handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
