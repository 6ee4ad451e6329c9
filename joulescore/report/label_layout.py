"""Text laid out on the label card from measured extents, so that nothing overlaps and no name breaks.

Every piece of text is placed, measured with the figure's own renderer and the
cursor moved past its bounding box; nothing relies on fixed offsets.  A value
too wide for the card wraps between its items only (hardware items, words of a
sentence), never inside one; an item too wide is shrunk to a minimum font size,
then shortened with "…", its full text kept for the SVG's ``<title>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

CARD_W_IN, CARD_H_IN = 4.0, 6.0
PNG_DPI = 150
#: the card's frame and its text column, in figure fractions
CARD = Bbox.from_extents(0.03, 0.02, 0.97, 0.98)
LEFT, RIGHT = 0.07, 0.93
#: a little room kept on every line: an SVG viewer's font may be a touch wider than the one measured here
_SLACK = 0.97
ELLIPSIS = "…"


def no_math(line: str) -> str:
    """``$`` escaped, so that matplotlib never reads a name as mathtext."""
    return line.replace("$", r"\$")


@dataclass(frozen=True)
class Style:
    """A font size, the smallest it may shrink to, and the rest of the text's look."""

    size: float
    min_size: float = 0.0
    weight: str = "normal"
    color: str = "black"


@dataclass(frozen=True)
class Block:
    """Items shown joined by ``sep``, broken into lines only between items (``tail`` ends a broken line)."""

    items: tuple[str, ...]
    sep: str = " "
    tail: str = ""
    max_lines: int = 1


#: one drawn line: its text, the full text where it was cut (for ``<title>``), its font size
Line = tuple[str, str | None, float]


@dataclass
class Card:
    """The figure being drawn, with a cursor that moves down the card as text is placed."""

    scale: float = 1.0
    fig: Figure = field(init=False)
    titles: dict[str, str] = field(default_factory=dict)
    y: float = CARD.y1
    #: extra room between sections, so that a short card spreads down to its footer
    spread: float = 0.0
    #: measured widths by (text, weight, size): shared by the tries at other scales
    widths: dict[tuple[str, str, float], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fig = Figure(figsize=(CARD_W_IN, CARD_H_IN), dpi=PNG_DPI)
        FigureCanvasAgg(self.fig)
        self.renderer = self.fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas has one
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, 1)
        self.ax.set_ylim(0, 1)
        self.ax.axis("off")
        self._probe = Text(0, 0, "", figure=self.fig)

    def section(self) -> None:
        """A break between sections: the cursor moves down by the card's spare room."""
        self.y -= self.spread

    def pt(self, points: float) -> float:
        """A height in points, scaled, as a fraction of the card's height."""
        return points * self.scale / 72 / CARD_H_IN

    def width(self, text: str, style: Style, size: float) -> float:
        """The drawn width of ``text`` (unescaped) at ``size``, as a fraction of the figure's width."""
        key = (text, style.weight, size)
        if key not in self.widths:
            self.widths[key] = self._measure(text, style, size)
        return self.widths[key]

    def _measure(self, text: str, style: Style, size: float) -> float:
        self._probe.set_text(no_math(text))
        self._probe.set_fontsize(size)
        self._probe.set_fontweight(style.weight)
        return float(self._probe.get_window_extent(self.renderer).width) / self.fig.bbox.width

    def text(self, x: float, y: float, text: str, style: Style, size: float | None = None, title: str | None = None,
             **kw: Any) -> Bbox:
        """Draw one line of text (unescaped) and return its box in figure fractions."""
        gid = None
        if title is not None:
            gid = f"joulescore-full-{len(self.titles)}"
            self.titles[gid] = title
        artist = self.ax.text(x, y, no_math(text), fontsize=size or style.size * self.scale,
                              fontweight=style.weight, color=style.color, gid=gid, **kw)
        return artist.get_window_extent(self.renderer).transformed(self.fig.transFigure.inverted())

    def line(self, text: str, style: Style, x: float = LEFT, ha: str = "left", gap_pt: float = 2.0,
             size: float | None = None, title: str | None = None) -> Bbox:
        """A line at the cursor (its top), the cursor then moved below it."""
        box = self.text(x, self.y, text, style, size, title, ha=ha, va="top")
        self.y = box.y0 - self.pt(gap_pt)
        return box

    def block(self, block: Block, style: Style, x: float = LEFT, ha: str = "left", gap_pt: float = 3.0) -> None:
        """A value that may take several lines, each drawn at the cursor."""
        lines = self.fit(block, style)
        for n, (text, title, size) in enumerate(lines):
            self.line(text, style, x, ha, 1.0 if n < len(lines) - 1 else gap_pt, size, title)

    def fit(self, block: Block, style: Style) -> list[Line]:
        """The block's lines (text, full text if cut, size): wrapped between items at the largest size that fits.

        An item too wide even at the style's minimum is first shortened around "…".  A line holding one
        item too wide shrinks on its own; the whole block shrinks only when it needs more lines than it
        may take, and at the minimum the lines past the last one are dropped.
        """
        size, floor = style.size * self.scale, max(style.min_size, 1.0) * self.scale
        room = (RIGHT - LEFT) * _SLACK
        tail = self.width(block.tail, style, floor)
        short = tuple(self.shorten(item, style, floor, room - tail) for item in block.items)
        full = dict(zip(short, block.items))
        cut = Block(short, block.sep, block.tail, block.max_lines)
        while True:
            lines = self._flow(cut, style, size, room)
            sizes = [self._size(cut, items, style, size, floor, room) or floor for items in lines]
            if len(lines) <= block.max_lines or size <= floor or not style.min_size:
                break
            size = max(floor, size - 0.5 * self.scale)
        out: list[Line] = []
        for n, (items, at) in enumerate(zip(lines[:block.max_lines], sizes)):
            whole = block.sep.join(full[i] for i in items)
            out.append((self._join(cut, items, n == len(lines) - 1), whole if whole != cut.sep.join(items) else None,
                        at))
        if len(lines) > block.max_lines:
            out[-1] = (self._drop(cut, lines[block.max_lines - 1], style, out[-1][2], room),
                       block.sep.join(block.items), out[-1][2])
        return out

    def _join(self, block: Block, items: list[str], last: bool = False) -> str:
        return block.sep.join(items) + ("" if last else block.tail)

    def _size(self, block: Block, items: list[str], style: Style, size: float, floor: float,
              room: float) -> float | None:
        """The size a line is drawn at: ``size``, or smaller for a lone item too wide; None if it cannot fit."""
        wide = self.width(self._join(block, items), style, size)
        if wide <= room:
            return size
        if len(items) > 1 or not style.min_size:
            return None
        smaller = int(size * room / wide * 10) / 10
        return smaller if smaller >= floor and self.width(self._join(block, items), style, smaller) <= room else None

    def _flow(self, block: Block, style: Style, size: float, room: float) -> list[list[str]]:
        """Items packed greedily into lines no wider than ``room`` (an item too wide takes a line of its own)."""
        lines: list[list[str]] = []
        for item in block.items:
            if lines and self.width(self._join(block, [*lines[-1], item]), style, size) <= room:
                lines[-1].append(item)
            else:
                lines.append([item])
        return lines or [[""]]

    def _drop(self, block: Block, items: list[str], style: Style, size: float, room: float) -> str:
        """The last line shown, ending in "…": whole items dropped from its end until it fits."""
        items = list(items)
        while len(items) > 1 and self.width(self._join(block, [*items, ELLIPSIS], last=True), style, size) > room:
            items.pop()
        last = self._join(block, [*items, ELLIPSIS], last=True)
        while self.width(last, style, size) > room and len(items[0]) > 1:
            items[0] = items[0][:-1]
            last = self._join(block, [*items, ELLIPSIS], last=True)
        return last

    def shorten(self, text: str, style: Style, size: float, room: float) -> str:
        """``text`` whole if it fits, else its start and end around "…" (both ends tell names apart)."""
        if self.width(text, style, size) <= room:
            return text
        lo, hi = 0, len(text)  # the longest kept length that fits, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(_middle(text, mid), style, size) <= room:
                lo = mid
            else:
                hi = mid - 1
        return _middle(text, lo)


def _middle(text: str, keep: int) -> str:
    head = (keep + 1) // 2
    return text[:head] + ELLIPSIS + (text[len(text) - (keep - head):] if keep - head else "")


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every text drawn on the card with its box in figure fractions (what the layout promises not to overlap)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas has one
    inverse = fig.transFigure.inverted()
    return [(t.get_text(), t.get_window_extent(renderer).transformed(inverse))
            for ax in fig.axes for t in ax.texts if t.get_text()]


def with_titles(svg: str, titles: dict[str, str]) -> str:
    """Each shortened text's full value as a ``<title>`` inside its ``<g id=...>``: a tooltip, and there for search."""
    def add(match: re.Match[str]) -> str:
        return f"{match.group(0)}\n   <title>{escape(titles[match.group(1)])}</title>"
    return re.sub(r'<g id="(joulescore-full-\d+)">', add, svg)
