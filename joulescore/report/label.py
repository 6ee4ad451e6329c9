"""The energy label: one card per run, drawn with matplotlib as SVG or PNG.

matplotlib draws both formats from the same figure, so the PNG is a real
rendering, not a converted SVG.  Text is kept as text in the SVG
(``svg.fonttype = none``), where matplotlib XML-escapes it; ``$`` is escaped so
a model name never turns into mathtext, and control characters (ESC, CR, bidi
overrides, newlines) are shown as escapes, as in the terminal.

The card flows from the top: each text is measured as it is placed
(``label_layout``), so nothing overlaps whatever the names.  A name never
breaks: the hardware wraps between its items, and a value too wide shrinks,
then is shortened with "…", its full text in the SVG's ``<title>``.  If the
whole card still runs long, it is laid out again a size smaller.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.model.sections import Meter
from joulescore.report.label_layout import (
    CARD,
    CARD_H_IN,
    CARD_W_IN,
    LEFT,
    PNG_DPI,
    RIGHT,
    Block,
    Card,
    Style,
    no_math,
    text_boxes,
    with_titles,
)
from joulescore.units import energy_mark
from joulescore.units import fmt as _fmt
from joulescore.visible import visible

__all__ = ["CARD_H_IN", "CARD_W_IN", "FORMATS", "LABEL_MARK", "PNG_DPI", "energy_parts", "hardware_items", "layout_label",
           "render_label", "safe", "text_boxes"]

FORMATS = (".svg", ".png")
MEASURED_GREEN = "#1b7f3b"
ESTIMATED_ORANGE = "#c25e00"
STAR_GOLD = "#f2b705"
STAR_GREY = "#d0d0d0"
DISTURBED_RED = "#b00020"
#: the maker named in every label file (SVG and PNG metadata): an existing file with it may be written over
LABEL_MARK = b"joulescore energy label"
DARK = "#222222"
GREY = "#666666"
CAPTION = Style(6.5, color=GREY)
#: the card is laid out again at these scales until it fits above its footer
SCALES = (1.0, 0.92, 0.85, 0.78, 0.72, 0.66, 0.6)
#: a short card's spare room is shared out between its sections (at most this much each, in card fractions)
SECTIONS, MAX_SPREAD = 5, 0.03
_DOMAINS = {"cpu": "CPU", "dram": "DRAM", "gpu": "GPU", "system": "system"}
_ORDER = list(_DOMAINS)


def safe(text: object) -> str:
    """Plain text for matplotlib: no mathtext (``$``), no control characters."""
    return no_math(visible(text))


def hardware_items(record: RunRecord) -> list[str]:
    """The hardware as whole items (``Hardware.parts``), escaped for the card."""
    return [visible(part) for part in record.hardware.parts()]


def _band(pct: float | None) -> str:
    if pct is None:
        return "no band stated"
    return f"±{pct:.0f}%" if pct >= 1 else f"±{pct:.1g}%"


def energy_parts(meter: Meter, covered: list[str] | None = None) -> list[str]:
    """How each domain's energy was had: measured with its counter, estimated with its band.

    A mixed meter records each domain's kind and source (``per_domain``); its stated
    band is the widest of its estimated parts, so it is printed beside those alone.
    ``covered`` names the domains where an older record does not list them.
    """
    covered = covered or []
    groups: dict[tuple[str, str], list[str]] = {}
    if meter.per_domain:
        for dom in sorted(meter.per_domain, key=lambda d: (_ORDER + [d]).index(d)):
            part = meter.per_domain[dom]
            groups.setdefault((str(part.get("kind", meter.kind)), str(part.get("source", ""))), []).append(dom)
    else:
        groups[(meter.kind, meter.sources[0] if meter.sources else "")] = list(meter.domains or covered)
    estimated = [key for key in groups if key[0] != "measured"]
    parts = []
    for (kind, source), doms in sorted(groups.items(), key=lambda g: g[0][0] != "measured"):
        what = "+".join(_DOMAINS.get(d, d) for d in doms)
        if kind == "measured":
            parts.append(f"{what} measured" + (f" ({source})" if source else ""))
        elif len(estimated) == 1:
            parts.append(f"{what} estimated {_band(meter.uncertainty_pct)}")
        else:
            parts.append(f"{what} estimated" + (f" ({source})" if source else ""))
    if len(estimated) > 1:
        parts.append(f"estimated parts {_band(meter.uncertainty_pct)} at most")
    return [visible(p.strip()) for p in parts]


def record_energy_parts(record: RunRecord) -> list[str]:
    """:func:`energy_parts` of a run, the domains it covers taken from its energy where the meter lists none."""
    e = record.energy
    covered = [d for d, j in (("cpu", e.cpu_j), ("dram", e.ram_j), ("gpu", e.gpu_j), ("system", e.system_j)) if j]
    return energy_parts(record.meter, covered)


def _stars_from_line(line: str) -> int | None:
    """The star count from the run's stars line ("★★★☆☆ 3/5 ..."), None when unrated."""
    head = line.split(" ", 2)
    if len(head) >= 2 and head[1].endswith("/5") and head[1][:-2].isdigit():
        return int(head[1][:-2])
    return None


def _field(card: Card, caption: str, value: Block, style: Style) -> None:
    card.line(caption, CAPTION, gap_pt=1.0)
    card.block(value, style, gap_pt=5.0)


def _header(card: Card) -> None:
    from matplotlib.patches import FancyBboxPatch

    card.ax.add_patch(FancyBboxPatch((CARD.x0, CARD.y0), CARD.width, CARD.height,
                                     boxstyle="round,pad=0,rounding_size=0.03", facecolor="white",
                                     edgecolor=DARK, linewidth=2))
    pad = card.pt(8)
    card.y -= pad
    box = card.line("AI ENERGY LABEL", Style(14, weight="bold", color="white"), x=0.5, ha="center")
    card.ax.add_patch(FancyBboxPatch((CARD.x0, box.y0 - pad), CARD.width, CARD.y1 - box.y0 + pad,
                                     boxstyle="square,pad=0", facecolor=DARK, edgecolor=DARK))
    card.y = box.y0 - pad - card.pt(8)


def _fields(card: Card, record: RunRecord) -> None:
    _field(card, "MODEL", Block((visible(record.model.name),)), Style(9, 6.5, "bold"))
    _field(card, "TASK", Block((visible(record.task.name),)), Style(9, 6.5))
    _field(card, "HARDWARE", Block(tuple(hardware_items(record)), ", ", ",", 3), Style(7.5, 5.5))
    _field(card, "DATE", Block((visible(record.created_at[:10]),)), Style(9, 6.5))


def _headline(card: Card, record: RunRecord, colour: str) -> None:
    card.y -= card.pt(2)
    card.line(_fmt(record.wh_per_1000_queries), Style(26, 12, "bold", colour), 0.5, "center", gap_pt=4)
    iv = record.interval
    ci = "" if iv is None else f"(95% CI {_fmt(iv.wh_per_1000_queries_low)}-{_fmt(iv.wh_per_1000_queries_high)})"
    card.block(Block(tuple(x for x in ("Wh per 1,000 queries", ci) if x), "  "),
               Style(9 if not ci else 7.5, 5.0), 0.5, "center", gap_pt=2)
    card.block(Block((*_per_unit(record), f"{_fmt(record.j_per_query)} J per query"), "   "), Style(7.5, 5.0), 0.5,
               "center", gap_pt=6)


def _per_unit(record: RunRecord) -> tuple[str, ...]:
    """Energy per what the task is made of: output tokens, audio-seconds (asr), nothing more for an image."""
    if record.media is None:
        return (f"{_fmt(record.j_per_output_token)} J per output token",)
    if record.media.inputs == "audio":
        return (f"{_fmt(record.media.j_per_audio_s)} J per audio-second",)
    return ()


def _rating(card: Card, record: RunRecord, stars_line: str) -> None:
    stars = _stars_from_line(stars_line)
    if record.interference is not None and record.interference.disturbed:  # never rated: the word takes their place
        card.line("DISTURBED", Style(18, 10, "bold", DISTURBED_RED), 0.5, "center", gap_pt=4)
    else:
        size_pt = 22 * card.scale
        centre = card.y - card.pt(11)
        for i in range(5):
            filled = stars is not None and i < stars
            card.ax.plot(0.3 + i * 0.1, centre, marker="*", markersize=size_pt,
                         color=STAR_GOLD if filled else STAR_GREY, markeredgecolor="#555555", markeredgewidth=0.6)
        card.y -= card.pt(26)
    if stars is not None:
        card.line(f"{stars} of 5 stars", Style(8.5), 0.5, "center", gap_pt=6)
    else:
        card.block(Block(tuple(visible(stars_line).split()), max_lines=2), Style(7), 0.5, "center", gap_pt=6)


def _aies_and_quality(card: Card, record: RunRecord, aies_line: str | None) -> None:
    if aies_line:
        card.line("AI ENERGY SCORE (PUBLISHED SCALE)", CAPTION, gap_pt=1.0)
        card.block(Block(tuple(visible(aies_line).split()), max_lines=3), Style(5.5), gap_pt=5.0)
    q = record.quality
    _field(card, "QUALITY", Block((f"{visible(q.metric)} = {_fmt(q.value)}", f"over {q.n} prompts"), " "),
           Style(8.5, 5.0))


def _mark(card: Card, record: RunRecord, colour: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    pad = card.pt(5)
    top = card.y
    card.y -= pad
    box = card.line(energy_mark(record.meter.kind).upper(), Style(12, 6, "bold", "white"), 0.5, "center")
    card.ax.add_patch(FancyBboxPatch((LEFT, box.y0 - pad), RIGHT - LEFT, top - box.y0 + pad,
                                     boxstyle="round,pad=0,rounding_size=0.01", facecolor=colour, edgecolor=colour))
    card.y = box.y0 - pad - card.pt(3)
    card.block(Block(tuple(record_energy_parts(record)), "; ", ";", 2), Style(6.5, 4.5), 0.5, "center")


def _footer(card: Card, record: RunRecord) -> float:
    """The footer drawn up from the card's bottom; returns its top, the floor for everything above."""
    cfg = record.config
    items = (visible(f"protocol {cfg.get('protocol')} (batch {cfg.get('batch_size')}, "
                     f"{cfg.get('max_new_tokens')} new tokens)"),
             visible(f"joulescore {record.tool.version}"), visible(f"run {record.run_id}"))
    style = Style(5.5, 4.0, color="#444444")
    y = CARD.y0 + card.pt(6)
    for text, title, size in reversed(card.fit(Block(items, "  |  ", "  |", 3), style)):
        y = card.text(0.5, y, text, style, size, title, ha="center", va="bottom").y1 + card.pt(1)
    return y + card.pt(4)


def _draw(record: RunRecord, stars_line: str, aies_line: str | None, card: Card) -> tuple[Card, float]:
    """The card drawn at its scale, and the room left above its footer (negative: it runs into it)."""
    colour = MEASURED_GREEN if record.meter.kind == "measured" else ESTIMATED_ORANGE
    _header(card)
    floor = _footer(card, record)
    for section in (lambda: _fields(card, record), lambda: _headline(card, record, colour),
                    lambda: _rating(card, record, stars_line), lambda: _aies_and_quality(card, record, aies_line),
                    lambda: _mark(card, record, colour)):
        section()
        card.section()
    return card, card.y + card.spread - floor


def layout_label(record: RunRecord, stars_line: str, aies_line: str | None = None) -> tuple[Figure, dict[str, str]]:
    """The laid-out card, and the full text of each shortened value by its SVG id (for ``<title>``)."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "font.family": "DejaVu Sans", "text.usetex": False}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # drawn as a box: no noise on stderr
        widths: dict[tuple[str, str, float], float] = {}
        for scale in SCALES:
            card, room = _draw(record, stars_line, aies_line, Card(scale, widths=widths))
            if room >= 0:
                spread = min(room / SECTIONS, MAX_SPREAD)
                card, _ = _draw(record, stars_line, aies_line, Card(scale, spread=spread, widths=widths))
                break
    return card.fig, card.titles


def render_label(record: RunRecord, stars_line: str, output: Path, aies_line: str | None = None) -> Path:
    """Draw the label of ``record`` to ``output`` (.svg or .png) and return its path.

    ``aies_line`` (the run on the published AI Energy Score scale) is printed under the local stars,
    labelled, so that the two views are never confused.
    """
    import matplotlib

    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise BadInput(f"label format must be .svg or .png, got {output.name!r}")
    fig, titles = layout_label(record, stars_line, aies_line)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.family": "DejaVu Sans", "text.usetex": False}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], dpi=PNG_DPI, facecolor="white",
                    metadata={"Creator": LABEL_MARK.decode()})
    data = buffer.getvalue()
    if suffix == ".svg":
        data = with_titles(data.decode("utf-8"), titles).encode("utf-8")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
    except OSError as exc:
        raise BadInput(f"cannot write label to {output}: {exc.strerror}") from None
    return output
