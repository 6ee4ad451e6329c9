"""``joulescore measure -- CMD ARGS...``: the energy of any command, like ``perf stat``.

The report goes to stderr (as perf stat's does) so the command's own stdout is
untouched; ``--json`` prints the figures as JSON there, ``--output`` writes
them to a file.  The exit status is the command's own.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from joulescore.errors import BadInput
from joulescore.meters.base import Measurement


def _exit_status(returncode: int) -> int:
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


def _table(m: Measurement, status: int) -> Table:
    per = m.provenance.domains
    table = Table(title=f"energy of: {m.name}  (exit status {status})", show_header=True)
    for col in ("domain", "energy J", "band J", "avg W", "kind", "source"):
        table.add_column(col)
    for d, e in m.energy_j.items():
        info = per.get(d.value, {"kind": m.provenance.kind, "source": ""})
        band = "" if info["kind"] == "measured" else f"{m.low_j[d]:.4g}-{m.high_j[d]:.4g}"
        table.add_row(d.value, f"{e:.4g}", band, f"{e / m.duration_s:.4g}" if m.duration_s else "n/a",
                      info["kind"], info["source"])
    table.add_row("total", f"{m.total_j:.4g}", f"{m.total_low_j:.4g}-{m.total_high_j:.4g}",
                  f"{m.avg_power_w:.4g}", m.provenance.kind, f"{m.duration_s:.3f} s elapsed")
    return table


def register(app: typer.Typer) -> None:
    """Add ``joulescore measure`` to the CLI."""

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def measure(
        command: Annotated[list[str], typer.Argument(help="the command and its arguments, after --")],
        meter: Annotated[str, typer.Option(help="energy source: auto, nvml, rapl, amdsmi, estimator")] = "auto",
        as_json: Annotated[bool, typer.Option("--json", help="report as JSON (on stderr)")] = False,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="also write the JSON report here")] = None,
    ) -> None:
        """Measure the energy of any command, like `perf stat`; exits with the command's status."""
        if not command:
            raise BadInput("nothing to measure: give a command after --, e.g. joulescore measure -- sleep 1")
        returncode, m = run_measured(list(command), meter)
        status = _exit_status(returncode)
        report = m.as_dict() | {"command": list(command), "exit_status": status}
        err = Console(stderr=True)
        if as_json:
            err.print(json.dumps(report), markup=False, highlight=False, soft_wrap=True)
        else:
            err.print(_table(m, status))
            for note in m.provenance.notes:
                err.print(f"  note: {note}", markup=False, highlight=False)
        if output is not None:
            try:
                output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise BadInput(f"cannot write {output}: {exc.strerror}") from None
        raise typer.Exit(status)
