"""The typer application and the two consoles every command prints through."""

from __future__ import annotations

import typer

from joulescore.cli.console import make_console

app = typer.Typer(
    name="joulescore",
    help="Measure how much energy AI inference really costs, and rate it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
out = make_console()
err = make_console(stderr=True)
