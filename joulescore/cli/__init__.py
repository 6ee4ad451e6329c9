"""The command line: one module per command group; parsing and printing only.

Every user error is one line on stderr and exit status 2: joulescore's own
errors, pydantic validation errors (naming the flag) and typer's usage errors.
"""

from __future__ import annotations

import signal
import sys

import click
import typer
from pydantic import ValidationError

from joulescore.cli import board, compare, impact, measure, proxy, reasoning, report, run, sweep  # noqa: F401  (registers the commands, in help order)
from joulescore.cli.app import app, err
from joulescore.cli.console import plain
from joulescore.errors import JoulescoreError
from joulescore.model.config import describe_error

__all__ = ["app", "main"]

#: the parser's errors: typer's own (it vendors click in newer releases) and click's
USAGE_ERRORS: tuple[type[Exception], ...] = tuple(
    {getattr(typer, "TyperException", click.ClickException), click.ClickException})
ABORTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, click.Abort, typer.Abort)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM stops a run like Ctrl-C: what finished is stored, the run is marked partial."""
    raise KeyboardInterrupt


def _fail(message: str, code: int = 2) -> None:
    err.print(f"error: {plain(message)}")
    sys.exit(code)


def main() -> None:
    """Entry point: user errors become one line and exit status 2, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rv = app(prog_name="joulescore", standalone_mode=False)
    except JoulescoreError as exc:
        _fail(str(exc), exc.exit_code)
    except ValidationError as exc:
        _fail(describe_error(exc.errors()[0]))
    except USAGE_ERRORS as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None and getattr(exc, "exit_code", 2) == 2 else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(message + hint, getattr(exc, "exit_code", 2) or 2)
    except ABORTS:
        err.print("interrupted")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
