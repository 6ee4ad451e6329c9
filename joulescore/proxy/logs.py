"""uvicorn's (and asyncio's) log records in joulescore's one-line form: never a traceback.

uvicorn logs on its own loggers, outside the CLI's error handler; without this a
Ctrl-C with a stream open, or an exception in a connection, prints dozens of
lines of traceback.  An exception is named by its type and message instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any


def _cancelled(record: logging.LogRecord) -> bool:
    """A task cancelled by a forced stop (Ctrl-C twice): its request's row says so; the log need not."""
    exc = record.exc_info[1] if record.exc_info else None
    return isinstance(exc, asyncio.CancelledError) or record.getMessage().rstrip().endswith("CancelledError")


class OneLine(logging.Formatter):
    """``joulescore proxy: MESSAGE[: ExcType: text]`` on one line; a traceback in the text is cut to its last line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().strip()
        if "Traceback (most recent call last)" in message:
            message = message.strip().splitlines()[-1]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        return "joulescore proxy: " + " ".join(message.split())


def log_config(level: str = "WARNING") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.Config(log_config=...)``."""
    handler = {"class": "logging.StreamHandler", "formatter": "one_line", "stream": "ext://sys.stderr",
               "filters": ["not_cancelled"]}
    logger = {"handlers": ["one_line"], "level": level, "propagate": False}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"one_line": {"()": OneLine}},
            "filters": {"not_cancelled": {"()": lambda: lambda record: not _cancelled(record)}},
            "handlers": {"one_line": handler},
            "loggers": {name: logger for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")}}
