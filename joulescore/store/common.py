"""What the store's tables share: where the database lives, its time stamps, text SQLite can hold."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil


def own_start_s() -> float:
    """When this process started (Unix time): stored beside its pid, so that pid and start time name
    one process for good, even after the system hands the pid to another one."""
    return psutil.Process().create_time()


def default_db_path() -> Path:
    """``$JOULESCORE_DB``, else the XDG data directory."""
    env = os.environ.get("JOULESCORE_DB")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "joulescore" / "joulescore.db"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def storable(value: Any) -> Any:
    """A string SQLite can hold: a lone surrogate (an undecodable byte of a file name, e.g. in an error text)
    is kept as its escape, ``\\udcff``, instead of failing the write."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
