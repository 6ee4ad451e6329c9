"""Options every command group shares: the database, JSON output, the run.json folder, the progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from joulescore.store.common import default_db_path
from joulescore.store.sqlite import Store

DbOption = Annotated[Optional[Path], typer.Option("--db", help="results database (default: $JOULESCORE_DB or the XDG data dir)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
OutOption = Annotated[Optional[Path], typer.Option("--out", help="where run.json goes (default: beside the database)")]
ForceOption = Annotated[bool, typer.Option(
    "--force", help="overwrite the output file even if it is not a previous output of this command")]
ProgressOption = Annotated[bool, typer.Option(help="show a progress bar on stderr")]


def open_store(db: Path | None) -> Store:
    """The results database named by ``--db``, else the default one, to write runs into (made if missing)."""
    return Store(db)


def read_store(db: Path | None) -> Store:
    """The results database, for a command that only reads it: opened read-only, never made or changed.

    A missing, empty or foreign file is a one-line error, not a new database.
    """
    return Store(db, readonly=True)


def run_json_dir(db: Path | None, out: Path | None) -> Path:
    """Where each run's run.json goes: ``--out``, else ``runs/`` beside the database."""
    return out if out is not None else (db or default_db_path()).expanduser().parent / "runs"


def split_list(text: str | None) -> list[str]:
    """``a, b,c`` -> ["a", "b", "c"]."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]


# A scraped meter's source (--meter prometheus / exporter), for the commands whose flags are not run settings.
PrometheusUrlOption = Annotated[Optional[str], typer.Option(help="--meter prometheus: the Prometheus server's URL")]
ExporterUrlOption = Annotated[Optional[str], typer.Option(help="--meter exporter: the exporter's /metrics URL")]
PresetOption = Annotated[Optional[str], typer.Option(help="scraped counters: dcgm, kepler-pod, kepler-node or node-rapl")]
QueryOption = Annotated[Optional[str], typer.Option(help="scraped counters: your own counter selector instead of a preset")]
SelectorOption = Annotated[Optional[str], typer.Option(help='narrow a preset to the workload, e.g. pod="vllm-0"')]
UnitOption = Annotated[Optional[str], typer.Option(help="the counter's unit: J, mJ or uJ (default: the preset's, else J)")]
