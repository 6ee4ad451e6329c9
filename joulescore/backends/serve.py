"""The engine a ``--serve`` command starts: our child for the run, and never longer.

A served engine that outlives joulescore keeps its port, and a later
``--resume`` would then measure that leftover instead of a server it started.
So the child gets its own process group (stopped as a whole), dies with us
even when we are SIGKILLed (``PR_SET_PDEATHSIG`` on Linux, and a watchdog
that stops the whole group once our end of a pipe closes, which any death
does), and a port that something already listens on is refused up front.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO
from urllib.parse import urlsplit

from joulescore.errors import BadInput

#: seconds the group has to exit after SIGTERM before it is SIGKILLed
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1

# Runs as its own small process: blocks until joulescore's end of the pipe closes (a normal close or any
# death, SIGKILL included), then stops the served process group, gracefully first.
_WATCHDOG = """
import os, signal, sys, time
pgid, grace_s = int(sys.argv[1]), float(sys.argv[2])
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
if alive():
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        os.killpg(pgid, signal.SIGKILL)
"""


def endpoint_port(endpoint: str) -> tuple[str, int]:
    """The host and port an endpoint URL names (the scheme's default port when none is given)."""
    parts = urlsplit(endpoint)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on (or holds) the port a served engine is to take."""
    for target in dict.fromkeys([("127.0.0.1", port), (host, port)]):
        try:
            with socket.create_connection(target, timeout=1.0):
                return True
        except OSError:
            pass
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover does not count
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGKILL the child when we die; None where prctl is unknown.

    Resolved here, before the fork: the child only makes the call.  SIGKILL, not SIGTERM: a server
    that ignores or hangs on SIGTERM would keep the port (the watchdog asks its group nicely first).
    The signal comes when the *thread* that started the child exits, so start it from a lasting one.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    kill = signal.SIGKILL

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # we died before the request was made
            os.kill(os.getpid(), kill)

    return preexec


class ServedProcess:
    """A ``--serve`` command running as the leader of its own process group, with a watchdog."""

    def __init__(self, command: str, endpoint: str) -> None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise BadInput(f"--serve {command!r} is not a command line: {exc}") from None
        if not argv:
            raise BadInput("--serve needs a command that starts the server")
        host, port = endpoint_port(endpoint)
        if port_in_use(host, port):
            raise BadInput(f"port {port} is already in use: another server (a leftover from an interrupted run?) "
                           f"is listening; stop it or choose another port")
        # The server's log goes to a file: a pipe nobody drains fills up and stalls the server.
        self.log: IO[bytes] = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent())
        except (OSError, subprocess.SubprocessError) as exc:
            self.log.close()
            raise BadInput(f"cannot start --serve command {command!r}: {getattr(exc, 'strerror', None) or exc}"
                           ) from None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None
        try:
            read_end, self._lifeline = os.pipe()
            try:
                self.watchdog = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(self.proc.pid), str(STOP_GRACE_S)],
                    stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            finally:
                os.close(read_end)
        except OSError:
            pass  # no watchdog: the server still dies with us through PDEATHSIG, its own children may not

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        """The exit status once the server has exited, else None."""
        return self.proc.poll()

    def last_line(self) -> str:
        """The last line the server logged, to say why it stopped."""
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - 4000))
        tail = self.log.read().decode(errors="replace")
        return next((ln.strip() for ln in reversed(tail.splitlines()) if ln.strip()), "no output")

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL for anything left after the grace period."""
        if self.log.closed:  # stopped already
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # stragglers: children that outlived their leader
        self.proc.wait()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()
        self.log.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
