"""uvicorn's (and asyncio's) log records in joulescore's one-line form: never a traceback.

uvicorn logs on its own loggers, outside the CLI's error handler; without this a
Ctrl-C with a stream open, or an exception in a connection, prints dozens of
lines of traceback.  An exception is named by its type and message instead.
"""

from __future__ import annotations

import logging
from typing import Any


class OneLine(logging.Formatter):
    """``joulescore proxy: MESSAGE[: ExcType: text]`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        return "joulescore proxy: " + " ".join(message.split())


def log_config(level: str = "WARNING") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.Config(log_config=...)``."""
    handler = {"class": "logging.StreamHandler", "formatter": "one_line", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["one_line"], "level": level, "propagate": False}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"one_line": {"()": OneLine}},
            "handlers": {"one_line": handler},
            "loggers": {name: logger for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")}}
