"""Where a command may write its output file: never over a file it reads, and over no file that is not
its own kind of output unless the user says ``--force``.

``report -o c.db`` once replaced the database it had just read with an HTML page.  Every command
that writes a file asks :func:`check_output` first, before it does any work: the path is compared
with each file the command reads as the file system sees them (``os.path.samefile``: symlinks,
``./``, hard links and case-insensitive names all resolve to one file), SQLite's ``-wal``, ``-shm``
and ``-journal`` files beside a database included; and an existing file is overwritten only when
it is a previous output of the same command (``is_own`` looks at its contents), or with ``--force``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from joulescore.errors import BadInput
from joulescore.textfile import special_kind

#: bytes read from an existing file to tell whether it is a previous output (markers sit near the top)
HEAD_BYTES = 64 * 1024
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
#: outputs that are streams, not files: writing one destroys nothing (``-o /dev/stdout``, ``-o >(jq .)``)
STREAMS = ("a FIFO (named pipe)", "a character device")


def head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


def marked(marker: bytes) -> Callable[[Path], bool]:
    """A file whose first bytes hold ``marker``: how a page or a label we drew names its maker."""
    return lambda path: marker in head(path)


def json_with(**fields: object) -> Callable[[Path], bool]:
    """A JSON object holding these keys (a value of ``...`` matches any value): a report we wrote."""
    def check(path: Path) -> bool:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and all(k in data and (v is ... or data[k] == v) for k, v in fields.items())
    return check


def database_files(db: Path) -> list[Path]:
    """A SQLite database and the files SQLite keeps beside it: all of it is read."""
    return [db, *(db.with_name(db.name + s) for s in SQLITE_SIDECARS)]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be looked at): not one file
        return False


def check_output(path: Path, *, what: str, is_own: Callable[[Path], bool], reads: Iterable[Path] = (),
                 force: bool = False, option: str = "-o", force_hint: str = "give --force to overwrite it") -> Path:
    """``path`` (``~`` expanded) if the command may write its ``what`` there, else a one-line ``BadInput``."""
    target = path.expanduser()
    shown = f"{option} {path}" if option else str(path)
    if target.is_dir():
        raise BadInput(f"{shown} is a folder; give the {what}'s file name")
    for read in reads:
        if _same_file(target, read.expanduser()):
            raise BadInput(f"{shown} is {read}, which this command reads; write the {what} somewhere else")
    kind = special_kind(target)
    if kind in STREAMS:  # a pipe or a terminal is written, not overwritten; reading it to look would wait
        return target
    if (target.exists() or target.is_symlink()) and not force and (kind is not None or not is_own(target)):
        raise BadInput(f"{shown} exists and is not a previous {what}; {force_hint}, or write it somewhere else")
    return target
