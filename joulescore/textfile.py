"""A user's text file (prompt set, sweep plan, CSV table) read as UTF-8, or one line saying why not.

A UTF-8 byte-order mark is accepted (editors on Windows write one); UTF-16/32,
Latin-1 and binary files are refused by name, so that a file which is not what
it claims never surfaces as a ``UnicodeDecodeError`` traceback.
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import os
import stat
from pathlib import Path

from joulescore.errors import BadInput

#: Byte-order marks of the encodings we refuse by name (UTF-32 first: its LE mark starts like UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


#: what a path is when it is neither a regular file nor a folder, by its stat mode test
_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def special_kind(path: Path) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder ("a FIFO (named pipe)"...), else None.

    Such a path is refused before it is opened: opening a FIFO waits for a writer forever, and
    reading a device may never end.  A missing or unreadable path gives None: opening it says why.
    """
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in _SPECIAL if test(mode)), "a special file")


def read_text(path: Path, what: str, error: type[BadInput] = BadInput) -> str:
    """The file's text, decoded as UTF-8 with or without a byte-order mark; ``what`` names it in errors."""
    path = path.expanduser()
    if path.is_dir():
        raise error(f"cannot read {what} {path}: it is a directory, not a file")
    kind = special_kind(path)
    if kind is not None:
        raise error(f"cannot read {what} {path}: it is {kind}, not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise error(f"{what} {path} is {name} text, not UTF-8; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                    f"save it as UTF-8") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise error(f"{what} {path} holds NUL bytes (line {line}): a binary file, or UTF-16 without a "
                    f"byte-order mark? save it as UTF-8 text")
    return text


def write_text(path: Path, text: str) -> None:
    """Write a user's output file (UTF-8); a FIFO that no process reads is an OSError, not a wait forever.

    A FIFO with a reader (``-o >(jq .)``) and a device (``/dev/stdout``, ``/dev/null``) are written as files are.
    """
    path = path.expanduser()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fifo = special_kind(path) == "a FIFO (named pipe)"
    try:
        fd = os.open(path, flags | (os.O_NONBLOCK if fifo else 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "it is a FIFO (named pipe) that no process reads") from None
        raise
    if fifo:
        os.set_blocking(fd, True)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


#: How deep lists and mappings read from a user file may nest, and how many values it may hold in all:
#: no prompt row or plan needs more, and beyond them recursion overflows or an alias bomb explodes.
MAX_DEPTH = 100
MAX_VALUES = 1_000_000


def shape_problem(value: object) -> str | None:
    """Why decoded JSON/YAML is too deep or too large to use, or None; iterative, so it cannot overflow."""
    count, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values"
        if isinstance(node, (dict, list)):
            if level > MAX_DEPTH:
                return f"nested too deep (over {MAX_DEPTH} levels)"
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return None


def read_csv(path: Path, what: str) -> list[dict[str, str]]:
    """A user's CSV table as rows keyed by its header; not UTF-8 or not CSV is a one-line error."""
    text = read_text(path, what)
    try:
        return [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        raise BadInput(f"{what} {path.expanduser()} is not valid CSV: {exc}") from None
