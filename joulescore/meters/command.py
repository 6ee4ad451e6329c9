"""Run a command under a meter: what ``joulescore measure`` measures."""

from __future__ import annotations

import signal
import subprocess

from joulescore.errors import BadInput
from joulescore.meters.base import Measurement


def exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run_measured(argv: list[str], meter_name: str = "auto") -> tuple[int, Measurement]:
    """Run a command under the meter; its CPU time (live and reaped children) feeds the estimator."""
    from joulescore.meters import select_meter
    from joulescore.meters.estimator import tree_cpu_s

    meter = select_meter(meter_name, cpu_seconds=tree_cpu_s)
    meter.start()
    try:
        begin = meter.read()
        try:
            proc = subprocess.Popen(argv)
        except FileNotFoundError:
            raise BadInput(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise BadInput(f"command not executable: {argv[0]}") from None
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the child; we report
        try:
            returncode = proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        end = meter.read()
    finally:
        meter.stop()
    return returncode, meter.measurement(begin, end, name=" ".join(argv))
