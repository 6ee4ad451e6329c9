"""The label: a rendered PNG of the right size that is not blank, and an SVG whose text is escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.report.label import CARD_H_IN, CARD_W_IN, PNG_DPI, render_label
from tests.records import make_record

NASTY = 'evil<script>alert("x")</script> & $\\alpha$ model with a very long name that has to wrap somewhere'


def record(kind: str = "estimated", name: str = "SmolLM2-135M-Instruct") -> RunRecord:
    return make_record(model={"name": name}, meter={"kind": kind})


def test_png_label_is_rendered_at_card_size_and_not_blank(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    path = render_label(record("measured"), "★★★★☆ 4/5 (equal-bins over 6 runs)", tmp_path / "label.png")
    pixels = mpimg.imread(path)
    assert pixels.shape[0] == CARD_H_IN * PNG_DPI and pixels.shape[1] == CARD_W_IN * PNG_DPI
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # not a flat image
    dark = (rgb.mean(axis=2) < 0.5).mean()
    assert 0.02 < dark < 0.6  # text and frames drawn, not a filled block
    greens = ((rgb[..., 1] > rgb[..., 0] + 0.2) & (rgb[..., 1] > rgb[..., 2] + 0.1)).sum()
    assert greens > 500  # the MEASURED band


def test_svg_label_escapes_text_and_shows_every_field(tmp_path: Path) -> None:
    path = render_label(record(name=NASTY), "no stars: peer group has 1 run(s), stars need 5", tmp_path / "l.svg")
    raw = path.read_text(encoding="utf-8")
    assert "<script>" not in raw
    root = ET.fromstring(raw)  # well-formed XML despite <, & and quotes in the name
    text = " ".join("".join(t.itertext()) for t in root.iter() if t.tag.endswith("text"))
    flat = " ".join(text.split())
    assert 'evil<script>alert("x")</script> &' in flat
    assert "ESTIMATED" in flat and "1.706" in flat and "Wh per 1,000 queries" in flat
    assert "0.6141 J per output token" in flat and "accuracy = 0.82" in flat
    assert "sentiment" in flat and "Emerald Rapids" in flat and "2026-01-01" in flat
    assert "energy-score" in flat and "joulescore 0.1.0" in flat and "no stars" in flat
    lines = [" ".join("".join(t.itertext()).split()) for t in root.iter() if t.tag.endswith("text")]
    assert max(len(line) for line in lines) < 80  # the long name wrapped


def test_label_rejects_other_formats(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="must be .svg or .png"):
        render_label(record(), "", tmp_path / "label.pdf")
