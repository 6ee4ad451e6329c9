"""The one console factory: what the CLI prints is text, never markup or terminal control.

Strings that reach a terminal come from outside (model names, paths, dataset
values, server error texts), so every console here has markup and emoji codes
off, and every string or :class:`rich.text.Text` it renders is one line with its
control characters shown escaped: a model file named with ``\\x1b[2J`` cannot
clear the screen, ``\\r`` cannot overwrite what came before, a bidi override
cannot reorder a line, a newline cannot forge a table row, and ``[/x]`` in a
name cannot crash a listing.  Styling is applied with ``style=`` and
:class:`rich.text.Text`, not markup.

When stdout is not a terminal the width is unbounded in practice and ignores
``COLUMNS``, so a piped table never cuts a run id, a sweep id or a path.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.table import Table
from rich.text import Span, Text

from joulescore.visible import escape_char, escape_control, is_unsafe

#: width of a console that writes to a pipe or a file: tables take their natural width up to this
PIPE_WIDTH = 1_000_000


def plain(value: Any) -> str:
    """One line of text from any value: control characters and newlines escaped, tabs as spaces."""
    return escape_control(str(value).replace("\t", " "), keep="")


def _unsafe_in_text(ch: str) -> bool:
    return ch == "\n" or is_unsafe(ch) and ch != "\t"


def safe_text(text: Text) -> Text:
    """``text`` on one line, its control characters and newlines escaped, its styles kept.

    rich itself strips only a few control characters (BEL, BS, CR...) from a
    :class:`Text`, and passes ESC, C1 codes and bidi overrides through.
    """
    cuts = [i for i, ch in enumerate(text.plain) if _unsafe_in_text(ch)]
    if not cuts:
        return text
    out = text.blank_copy()
    for piece in text.divide(sorted({c for i in cuts for c in (i, i + 1)})):
        if len(piece.plain) == 1 and _unsafe_in_text(piece.plain):
            shown = escape_char(piece.plain)
            piece = Text(shown, style=piece.style, spans=[Span(0, len(shown), s.style) for s in piece.spans])
        out.append_text(piece)
    return out


class SafeConsole(Console):
    """A rich console that renders every string, and every :class:`Text`, as one line of escaped text.

    Newlines show as ``\\n`` and control characters as ``\\x1b``-style escapes, so a
    stored name can neither drive the terminal nor forge a line of a table: to
    print two lines, print twice.  Strings put into a ``Text`` are best passed
    through :func:`plain` first, so that tables measure them as they are shown;
    the escaping here is the last guard.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = False
        kwargs.setdefault("highlight", False)
        kwargs["emoji"] = False
        return super().render_str(plain(text), **kwargs)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        if isinstance(renderable, Text):
            renderable = safe_text(renderable)
        return super().render(renderable, options)


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
    widest = max(cell_len(plain(v)) for v in [header, *values])
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
