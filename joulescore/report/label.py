"""The energy label: one card per run, drawn with matplotlib as SVG or PNG.

matplotlib draws both formats from the same figure, so the PNG is a real
rendering, not a converted SVG.  Text is kept as text in the SVG
(``svg.fonttype = none``), where matplotlib XML-escapes it; ``$`` is escaped so
a model name never turns into mathtext, and control characters (ESC, CR, bidi
overrides, newlines) are shown as escapes, as in the terminal.  Long names wrap
onto a second line, then end in "…", so that the card keeps its layout.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path
from typing import Any

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.units import energy_mark
from joulescore.units import fmt as _fmt
from joulescore.visible import visible

FORMATS = (".svg", ".png")
CARD_W_IN, CARD_H_IN = 4.0, 6.0
PNG_DPI = 150
MEASURED_GREEN = "#1b7f3b"
ESTIMATED_ORANGE = "#c25e00"
STAR_GOLD = "#f2b705"
STAR_GREY = "#d0d0d0"
DISTURBED_RED = "#b00020"
#: the maker named in every label file (SVG and PNG metadata): an existing file with it may be written over
LABEL_MARK = b"joulescore energy label"
#: lines a wrapped value may take before it is cut with "…"
MAX_LINES = 2
def _no_math(line: str) -> str:
    return line.replace("$", r"\$")


def safe(text: Any) -> str:
    """Plain text for matplotlib: no mathtext (``$``), no control characters."""
    return _no_math(visible(text))


def wrap(text: Any, width: int, max_lines: int = MAX_LINES) -> str:
    """Wrapped to ``width``, at most ``max_lines`` lines, the last cut with "…" if the text goes on.

    ``$`` is escaped per line, after wrapping, so that a break never splits ``\\$``.
    """
    lines = textwrap.wrap(visible(text), width=width, break_long_words=True)
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], lines[max_lines - 1][:width - 1].rstrip() + "…"]
    return "\n".join(map(_no_math, lines)) or "-"


def _stars_from_line(line: str) -> int | None:
    """The star count from the run's stars line ("★★★☆☆ 3/5 ..."), None when unrated."""
    head = line.split(" ", 2)
    if len(head) >= 2 and head[1].endswith("/5") and head[1][:-2].isdigit():
        return int(head[1][:-2])
    return None


def render_label(record: RunRecord, stars_line: str, output: Path, aies_line: str | None = None) -> Path:
    """Draw the label of ``record`` to ``output`` (.svg or .png) and return its path.

    ``aies_line`` (the run on the published AI Energy Score scale) is printed under the local stars,
    labelled, so that the two views are never confused.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise BadInput(f"label format must be .svg or .png, got {output.name!r}")
    model, task, meter = record.model, record.task, record.meter
    kind = meter.kind
    measured = kind == "measured"
    mark = energy_mark(kind).upper()
    colour = MEASURED_GREEN if measured else ESTIMATED_ORANGE
    hw = record.hardware
    hardware = f"{hw.cpu}, {hw.logical_cpus} CPUs" + (
        f", {', '.join(str(g.get('name')) for g in hw.gpus)}" if hw.gpus else "")
    quality = record.quality

    with matplotlib.rc_context({"svg.fonttype": "none", "font.family": "DejaVu Sans", "text.usetex": False}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # drawn as a box: no noise on stderr
        fig = Figure(figsize=(CARD_W_IN, CARD_H_IN))
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ax.add_patch(FancyBboxPatch((0.03, 0.02), 0.94, 0.96, boxstyle="round,pad=0,rounding_size=0.03",
                                    facecolor="white", edgecolor="#222222", linewidth=2))
        ax.add_patch(FancyBboxPatch((0.03, 0.89), 0.94, 0.09, boxstyle="square,pad=0",
                                    facecolor="#222222", edgecolor="#222222"))
        ax.text(0.5, 0.935, "AI ENERGY LABEL", color="white", ha="center", va="center", fontsize=14,
                fontweight="bold")
        y = 0.865
        # (field, value, characters per line, lines at most): the card has room for two extra lines in all
        for label_text, value, width, lines in (("model", model.name, 34, 2), ("task", task.name, 34, 1),
                                                ("hardware", hardware, 40, 2),
                                                ("date", record.created_at[:10], 34, 1)):
            body = wrap(value, width, lines)
            ax.text(0.07, y, label_text.upper(), fontsize=6.5, color="#666666", va="top")
            ax.text(0.07, y - 0.022, body, fontsize=9 if label_text != "hardware" else 7.5, va="top",
                    fontweight="bold" if label_text == "model" else "normal", linespacing=1.2)
            y -= 0.06 + 0.026 * body.count("\n")
        y -= 0.01
        ax.text(0.5, y, _fmt(record.wh_per_1000_queries), ha="center", va="top", fontsize=26,
                fontweight="bold", color=colour)
        iv = record.interval
        ci = "" if iv is None else (f"  (95% CI {_fmt(iv.wh_per_1000_queries_low)}-"
                                    f"{_fmt(iv.wh_per_1000_queries_high)})")
        ax.text(0.5, y - 0.075, "Wh per 1,000 queries" + ci, ha="center", va="top", fontsize=9 if not ci else 7.5)
        ax.text(0.5, y - 0.105, f"{_fmt(record.j_per_output_token)} J per output token   "
                f"{_fmt(record.j_per_query)} J per query", ha="center", va="top", fontsize=7.5)
        y -= 0.17
        stars = _stars_from_line(stars_line)
        disturbed = record.interference is not None and record.interference.disturbed
        if disturbed:  # never rated: the word takes the stars' place
            ax.text(0.5, y, "DISTURBED", ha="center", va="center", fontsize=18, fontweight="bold",
                    color=DISTURBED_RED)
        for i in range(0 if disturbed else 5):
            filled = stars is not None and i < stars
            ax.plot(0.3 + i * 0.1, y, marker="*", markersize=22, color=STAR_GOLD if filled else STAR_GREY,
                    markeredgecolor="#555555", markeredgewidth=0.6)
        note = f"{stars} of 5 stars" if stars is not None else wrap(stars_line, 52)
        ax.text(0.5, y - 0.045, note, ha="center", va="top", fontsize=7 if stars is None else 8.5)
        y -= 0.14 if stars is None else 0.1
        if aies_line:
            ax.text(0.07, y + 0.012, "AI ENERGY SCORE (PUBLISHED SCALE)", fontsize=6.5, color="#666666", va="top")
            ax.text(0.07, y - 0.008, wrap(aies_line, 70, 3), fontsize=5.5, va="top", linespacing=1.15)
            y -= 0.065
        ax.text(0.07, y, "QUALITY", fontsize=6.5, color="#666666", va="top")
        ax.text(0.07, y - 0.022, wrap(f"{quality.metric} = {_fmt(quality.value)}"
                                      f" over {quality.n} prompts", 44), fontsize=8.5, va="top")
        y -= 0.075
        ax.add_patch(FancyBboxPatch((0.07, y - 0.06), 0.86, 0.06, boxstyle="round,pad=0,rounding_size=0.01",
                                    facecolor=colour, edgecolor=colour))
        ax.text(0.5, y - 0.03, mark, color="white", ha="center", va="center", fontsize=12, fontweight="bold")
        source = ((meter.sources or [kind])[0]).split(":")[0][:48]
        band = "no band stated" if meter.uncertainty_pct is None else f"+/-{meter.uncertainty_pct:.0f}%"
        ax.text(0.5, y - 0.07, safe(f"energy source: {source}, {band}"),
                ha="center", va="top", fontsize=6.5)
        cfg = record.config
        footer = (f"protocol {cfg['protocol']} (batch {cfg['batch_size']}, {cfg['max_new_tokens']} new tokens)"
                  f"  |  joulescore {record.tool.version}  |  run {record.run_id}")
        ax.text(0.5, 0.045, wrap(footer, 70), ha="center", va="bottom", fontsize=5.5, color="#444444")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(output, format=suffix[1:], dpi=PNG_DPI, facecolor="white",
                        metadata={"Creator": LABEL_MARK.decode()})
        except OSError as exc:
            raise BadInput(f"cannot write label to {output}: {exc.strerror}") from None
    return output
