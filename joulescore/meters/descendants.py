"""The processes a measured command leaves behind: kept in view, counted, and named when they outlive it.

A daemon double-forks: its parent exits at once and the kernel re-parents it to
init, outside the command's process tree, so its CPU time was never counted
(``measure`` reported 0 J for a command whose daemon burned 8 CPU-seconds).
On Linux, ``measure`` makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``,
as systemd and tini do): orphans of the command re-parent to ``measure`` instead,
stay in its tree, and their CPU time is counted while the command runs.  Where
that is not possible the tree is polled, so that a survivor can still be named.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

import psutil

#: prctl options (linux/prctl.h)
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37


def _prctl(option: int, arg: int | ctypes.c_int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, arg, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # no libc prctl: not Linux
        return False


@contextlib.contextmanager
def subreaper() -> Iterator[bool]:
    """This process adopts its descendants' orphans while the block runs; yields whether it could."""
    if not sys.platform.startswith("linux"):
        yield False
        return
    was = ctypes.c_int(0)
    if not _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was)) or not _prctl(_PR_SET_CHILD_SUBREAPER, 1):  # type: ignore[arg-type]  # prctl takes a pointer here
        yield False
        return
    try:
        yield True
    finally:
        if not was.value:
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)


class Descendants:
    """What the command started, told apart from this process's other children (pytest's, an API caller's)."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.before = {p.pid for p in self._tree()}
        #: (pid, create time) of every descendant seen while polling: found again after the command if it lives on
        self.seen: dict[int, float] = {}

    def _tree(self) -> list[psutil.Process]:
        try:
            return self.me.children(recursive=True)
        except psutil.Error:
            return []

    def poll(self) -> None:
        """Remember the command's descendants (where orphans cannot be adopted, they leave the tree)."""
        for p in self._tree():
            if p.pid not in self.before:
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault(p.pid, p.create_time())

    def alive(self, command_pid: int) -> list[psutil.Process]:
        """The command's descendants still running (zombies excluded), in the tree or seen there before."""
        found = {p.pid: p for p in self._tree() if p.pid not in self.before and p.pid != command_pid}
        for pid, created in self.seen.items():
            if pid not in found and pid != command_pid:
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(pid)
                    if p.create_time() == created:  # the same process, not a new one with its pid
                        found[pid] = p
        live = []
        for p in found.values():
            with contextlib.suppress(psutil.Error):
                if p.status() != psutil.STATUS_ZOMBIE:
                    live.append(p)
        return sorted(live, key=lambda p: p.pid)

    def reap(self, command_pid: int) -> None:
        """Reap adopted orphans that have exited (their CPU time then joins this process's children's)."""
        for p in self._tree():
            if p.pid in self.before or p.pid == command_pid:
                continue
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if p.ppid() == self.me.pid and p.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(p.pid, os.WNOHANG)


def describe(procs: list[psutil.Process]) -> list[dict[str, object]]:
    """pid and name of each process, for the report."""
    out: list[dict[str, object]] = []
    for p in procs:
        try:
            out.append({"pid": p.pid, "name": p.name()})
        except psutil.Error:
            out.append({"pid": p.pid, "name": None})
    return out
