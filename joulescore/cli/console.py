"""The one console factory: what the CLI prints is text, never markup or terminal control.

Strings that reach a terminal come from outside (model names, paths, dataset
values, server error texts), so every console here has markup off, and every
string it renders has its control characters shown escaped: a model file named
with ``\\e[2J`` cannot clear the screen, and ``[/x]`` in a name cannot crash a
listing.  Styling is applied with ``style=`` and :class:`rich.text.Text`, not markup.

When stdout is not a terminal the width is generous and ignores ``COLUMNS``,
so a piped table never cuts a run id, a sweep id or a path.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: width of a console that writes to a pipe or a file: tables take their natural width up to this
PIPE_WIDTH = 4000


def escape_control(text: str) -> str:
    """Control characters (ESC, CR, BEL, C1 codes...) as visible escapes; newlines and tabs kept."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch in "\n\t":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def plain(value: Any) -> str:
    """One line of text from any value: control characters and newlines escaped."""
    return escape_control(str(value)).replace("\n", "\\n").replace("\t", " ")


class SafeConsole(Console):
    """A rich console that renders every string as plain, escaped text."""

    def render_str(self, text: str, **kwargs: Any) -> Text:  # type: ignore[override]  # rich's signature is keyword-rich
        kwargs["markup"] = False
        kwargs.setdefault("highlight", False)
        return super().render_str(escape_control(text), **kwargs)


def make_console(stderr: bool = False) -> SafeConsole:
    """stdout or stderr; wide and uncut when not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return SafeConsole(stderr=stderr, markup=False, highlight=False, emoji=False,
                       width=None if terminal else PIPE_WIDTH, soft_wrap=True)


def table(title: str | None = None, **kwargs: Any) -> Table:
    """A table whose identifier columns are added with :func:`id_column`."""
    return Table(title=title, **kwargs)


def id_column(t: Table, header: str, values: list[str]) -> None:
    """A column that holds identifiers (run ids, models, paths): never wrapped, never cut short."""
    widest = max([len(header), *(len(v) for v in values)]) if values else len(header)
    t.add_column(header, no_wrap=True, min_width=widest, overflow="ignore")


def print_json(console: Console, data: Any) -> None:
    """JSON on stdout, indented; NaN and infinity become null so the output is always valid JSON."""
    text = json.dumps(_finite(data), indent=2, ensure_ascii=True)
    console.file.write(text + "\n")
    console.file.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
