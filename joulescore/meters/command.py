"""Run a command under a meter: what ``joulescore measure`` measures.

The command is started the way a shell starts it (PATH search, a script
without ``#!`` run by ``/bin/sh``), and what the kernel refuses to run is named
in one line: a missing interpreter, a binary for another machine, a file
without execute permission, a directory.

Signals: the child stays in measure's process group, so a terminal's Ctrl-C
reaches it directly.  SIGINT and SIGTERM are blocked in measure (and in any
meter thread) and taken with ``sigtimedwait``: one that someone sent measure
with kill() is forwarded to the child, one the kernel sent the whole group
(a terminal's Ctrl-C) is not, so the child never gets it twice.  Measure then
waits for the child and reports; a signal never cuts the report short.
"""

from __future__ import annotations

import codecs
import errno
import os
import shlex
import shutil
import signal
from collections.abc import Set
from dataclasses import dataclass, field, replace
from pathlib import Path

from joulescore.errors import BadInput
from joulescore.meters.base import Measurement
from joulescore.meters.descendants import Descendants, describe, subreaper
from joulescore.model.scrape import ScrapeOptions
from joulescore.textfile import special_kind

#: what runs an executable text file that has no ``#!`` line, as a shell does on ENOEXEC
SHELL = "/bin/sh"
#: signals sent to measure that the child should get
FORWARDED = frozenset({signal.SIGINT, signal.SIGTERM})
#: si_code of a signal the kernel sent (a terminal's Ctrl-C to its foreground group), not kill()
_SI_KERNEL = 0x80
#: how often the command's process tree is looked at where orphans are not adopted, and while waiting for them
POLL_S = 0.25
#: bytes read to tell a script from a binary
_SNIFF_BYTES = 4096


def exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class CommandRun:
    """A measured command: its return code (negative N: killed by signal N) and its measurement."""

    returncode: int
    measurement: Measurement
    #: pid and name of each process the command started that was still running when measuring ended
    outlived: list[dict[str, object]] = field(default_factory=list)
    #: measuring went on until the command's descendants exited too (``--wait-descendants``)
    waited_for_descendants: bool = False


def run_measured(argv: list[str], meter_name: str = "auto", wait_descendants: bool = False,
                 options: ScrapeOptions | None = None) -> CommandRun:
    """Run a command under the meter; the CPU time of its whole process tree feeds the estimator.

    Orphans the command leaves (a daemon) are adopted where the system allows (see
    :mod:`joulescore.meters.descendants`), so their CPU time counts while the window is open; the window
    closes when the command exits, or with ``wait_descendants`` when its last descendant does.  Those still
    running at the close are named in the measurement's notes and in ``outlived``.  ``options``: a scraped
    meter's source.
    """
    from joulescore.meters import select_meter
    from joulescore.meters.estimator import tree_cpu_s

    program = locate(argv[0])
    meter = select_meter(meter_name, cpu_seconds=tree_cpu_s, options=options)
    # blocked before the meter starts its threads, so they inherit the mask and never take these signals
    held = FORWARDED | {signal.SIGCHLD}
    child_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    with subreaper() as adopted:
        tree = Descendants()
        try:
            meter.start()
            try:
                begin = meter.read()
                if signal.sigpending() & FORWARDED:
                    raise KeyboardInterrupt  # stopped before the command started: nothing to measure
                pid = spawn(argv, program, child_mask)
                returncode = _wait(pid, held, None if adopted else tree)
                stopped = wait_descendants and not _wait_descendants(pid, held, tree)
                live = tree.alive(pid)
                end = meter.read()
            finally:
                meter.stop()
        finally:
            _drain(FORWARDED)  # arrived after the child ended: the report still comes
            signal.pthread_sigmask(signal.SIG_SETMASK, child_mask)
        tree.reap(pid)
    m = meter.measurement(begin, end, name=shlex.join(argv))
    if live:
        m = _with_note(m, _outlived_note(describe(live), adopted, wait_descendants, stopped))
    return CommandRun(returncode, m, describe(live), wait_descendants)


def _outlived_note(procs: list[dict[str, object]], adopted: bool, waited: bool, stopped: bool) -> str:
    named = ", ".join(f"{p['name'] or '?'} (pid {p['pid']})" for p in procs[:5]) + (", ..." if len(procs) > 5 else "")
    when = "when the wait for them was stopped" if stopped else "when the command ended"
    counted = ("their CPU time up to then is counted, " if adopted else
               "this system cannot adopt orphaned processes, so the time of any that left the tree is not counted; ")
    hint = "" if waited else "; measure until they exit with --wait-descendants"
    return (f"{len(procs)} process{'es' if len(procs) > 1 else ''} started by the command still running {when}: "
            f"{named}; {counted}not what they use after{hint}")


def _with_note(m: Measurement, note: str) -> Measurement:
    return replace(m, provenance=replace(m.provenance, notes=(*m.provenance.notes, note)))


def locate(name: str) -> str:
    """The file a shell would run for ``name``: a path as given, a bare name from PATH."""
    if "/" in name:
        return name
    found = shutil.which(name) if name else None
    if found is None:
        raise BadInput(f"command not found: {name!r}" if not name else f"command not found: {name}")
    return found


def spawn(argv: list[str], program: str, mask: Set[int]) -> int:
    """Start the command with the signal mask and dispositions it would get from a shell; its pid."""
    try:
        return _posix_spawn(program, argv, mask)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC and interpreter(program) is None and is_text(program):
            return _posix_spawn(SHELL, [SHELL, program, *argv[1:]], mask)
        raise BadInput(why_not_executable(argv[0], program, exc)) from None


def _posix_spawn(path: str, argv: list[str], mask: Set[int]) -> int:
    # Python ignores SIGPIPE and SIGXFSZ; a child gets them back at their defaults (as subprocess does)
    defaults = [s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if s is not None]
    return os.posix_spawn(path, argv, os.environ, setsigmask=mask, setsigdef=defaults)


def _wait(pid: int, held: Set[int], tree: Descendants | None) -> int:
    """Wait for the child, forwarding the signals sent to measure; its return code.

    ``tree``: poll the command's descendants each turn (where orphans cannot be adopted, they are seen only so).
    """
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if tree is not None:
            tree.poll()
        # SIGCHLD wakes it at once; the timeout is a safety net (and the polling interval)
        info = signal.sigtimedwait(held, 1.0 if tree is None else POLL_S)
        if info is not None and info.si_signo in FORWARDED and info.si_code != _SI_KERNEL:
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass  # ended meanwhile: reaped on the next turn


def _wait_descendants(pid: int, held: Set[int], tree: Descendants) -> bool:
    """Wait until none of the command's descendants is running; False when a signal (Ctrl-C) stopped the wait."""
    while tree.alive(pid):
        tree.reap(pid)
        info = signal.sigtimedwait(held, POLL_S)
        if info is not None and info.si_signo in FORWARDED:
            return False
    return True


def _drain(signals: Set[int]) -> None:
    while signal.sigtimedwait(signals, 0) is not None:
        pass


def interpreter(path: str) -> str | None:
    """The interpreter a ``#!`` line names, or None when the file has none (or cannot be read)."""
    if not os.path.isfile(path):  # a FIFO would block the open until a writer came
        return None
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split()
    return words[0].decode(errors="replace") if words else ""


def is_text(path: str) -> bool:
    """Whether a file looks like a script (UTF-8, no NUL bytes) rather than a binary."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut multibyte tail is fine
    except UnicodeDecodeError:
        return False
    return True


def why_not_executable(name: str, program: str, exc: OSError) -> str:
    """One line saying why the kernel would not run ``program`` (typed as ``name``)."""
    if os.path.isdir(program):
        return f"cannot execute {name}: it is a directory"
    kind = special_kind(Path(program))
    if kind is not None:
        return f"cannot execute {name}: it is {kind}"
    interp = interpreter(program)
    if exc.errno == errno.ENOENT:
        if not os.path.exists(program):
            return f"command not found: {name}"
        if interp:
            return f"{name}: interpreter {interp} not found"
        return f"cannot execute {name}: the loader it needs to start is missing (no such file or directory)"
    if exc.errno == errno.EACCES:
        if interp and os.access(program, os.X_OK):
            return f"{name}: interpreter {interp}: permission denied"
        return f"cannot execute {name}: permission denied"
    if exc.errno == errno.ENOEXEC:
        if interp is not None:
            return f"{name}: interpreter {interp or '(none named)'} is not an executable format for this machine"
        return f"cannot execute {name}: not an executable format for this machine"
    return f"cannot execute {name}: {exc.strerror or exc}"
