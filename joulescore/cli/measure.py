"""``joulescore measure -- CMD ARGS...`` (the energy of any command, like ``perf stat``) and ``meters``.

The report goes to stderr (as perf stat's does) so the command's own stdout is
untouched; ``--json`` prints the figures as JSON there, ``--output`` writes
them to a file.  The exit status is the command's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from joulescore.cli.app import app, err, out
from joulescore.cli.console import plain, print_json
from joulescore.cli.options import (
    ExporterUrlOption,
    ForceOption,
    JsonOption,
    PresetOption,
    PrometheusUrlOption,
    QueryOption,
    SelectorOption,
    UnitOption,
)
from joulescore.errors import BadInput
from joulescore.meters import METER_NAMES
from joulescore.textfile import write_text

if TYPE_CHECKING:
    from joulescore.meters.base import Measurement


def _table(m: Measurement, status: int) -> Table:
    per = m.provenance.domains
    table = Table(title=f"energy of: {plain(m.name)}  (exit status {status})", show_header=True)
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def measure(
    command: Annotated[list[str], typer.Argument(help="the command and its arguments, after --")],
    meter: Annotated[str, typer.Option(help=f"energy source: {', '.join(METER_NAMES)}")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="report as JSON (on stderr)")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="also write the JSON report here")] = None,
    force: ForceOption = False,
    wait_descendants: Annotated[bool, typer.Option(
        "--wait-descendants", help="measure until the processes the command started (a daemon) exit too")] = False,
    prometheus_url: PrometheusUrlOption = None, exporter_url: ExporterUrlOption = None, preset: PresetOption = None,
    query: QueryOption = None, selector: SelectorOption = None, unit: UnitOption = None,
) -> None:
    """Measure the energy of any command, like `perf stat`; exits with the command's status."""
    if not command:
        raise BadInput("nothing to measure: give a command after --, e.g. joulescore measure -- sleep 1")
    if output is not None and not output.expanduser().is_dir():  # before the command runs (a folder: warned after)
        from joulescore.outputs import check_output, json_with

        output = check_output(output, what="measure report", is_own=json_with(command=..., exit_status=...),
                              force=force, option="--output")
    from joulescore.meters.command import exit_status, run_measured
    from joulescore.model.scrape import ScrapeOptions

    scrape = ScrapeOptions(prometheus_url, exporter_url, preset, query, selector, unit)
    done = run_measured(list(command), meter, wait_descendants, scrape)
    m, status = done.measurement, exit_status(done.returncode)
    report = m.as_dict() | {"command": list(command), "exit_status": status, "outlived": done.outlived,
                            "waited_for_descendants": done.waited_for_descendants}
    if as_json:
        err.print(json.dumps(report))
    else:
        err.print(_table(m, status))
        for note in m.provenance.notes:
            err.print(f"  note: {note}")
    if output is not None:
        try:
            write_text(output, json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            # the command ran and was measured: its exit status stands, the lost copy is a warning
            err.print(f"warning: cannot write {plain(output)}: {exc.strerror or exc}")
    raise typer.Exit(status)


@app.command()
def meters(as_json: JsonOption = False) -> None:
    """Every energy source: available here or not, why, what it covers and its resolution."""
    from joulescore.meters import meter_statuses

    statuses = meter_statuses()
    if as_json:
        print_json(out, [s.__dict__ | {"covers": list(s.covers)} for s in statuses])
        return
    table = Table(title="energy sources")
    for col in ("source", "available", "kind", "covers", "resolution", "why"):
        table.add_column(col)
    for s in statuses:
        table.add_row(s.name, "yes" if s.available else "no", s.kind, ", ".join(s.covers), s.resolution, s.reason)
    out.print(table)
