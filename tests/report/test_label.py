"""The label: a rendered PNG of the right size that is not blank, an SVG whose text is escaped, the band per domain."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.model.sections import Meter
from joulescore.report.label import CARD_H_IN, CARD_W_IN, PNG_DPI, energy_parts, hardware_items, render_label
from tests.records import make_record

NASTY = 'evil<script>alert("x")</script> & $\\alpha$ model with a very long name that has to be cut somewhere'


def record(kind: str = "estimated", name: str = "SmolLM2-135M-Instruct") -> RunRecord:
    return make_record(model={"name": name}, meter={"kind": kind})


def svg_of(path: Path) -> tuple[list[str], list[str]]:
    """Each SVG text element's text, and each <title>'s (the full text of a shortened value)."""
    root = ET.fromstring(path.read_text(encoding="utf-8"))  # well-formed XML whatever the names hold
    texts = ["".join(t.itertext()) for t in root.iter() if t.tag.split("}")[-1] == "text"]
    titles = [t.text or "" for t in root.iter() if t.tag == "{http://www.w3.org/2000/svg}title"]
    return texts, titles


def shown_whole(value: str, texts: list[str], titles: list[str]) -> bool:
    """``value`` unbroken inside one text element, or in the <title> of the one that shows it shortened."""
    return any(value in t for t in texts) or any(value in t for t in titles)


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
    rec = record(name=NASTY)
    path = render_label(rec, "no stars: peer group has 1 run(s), stars need 5", tmp_path / "l.svg")
    assert "<script>" not in path.read_text(encoding="utf-8")
    texts, titles = svg_of(path)
    assert any(t.startswith('evil<script>alert("x")</script') and "…" in t for t in texts)
    assert NASTY in titles  # too long for the card: shortened, whole in its <title>
    for item in hardware_items(rec):
        assert shown_whole(item, texts, titles), item
    assert {"ESTIMATED", "1.706", "Wh per 1,000 queries", "sentiment", "2026-01-01", "CPU+DRAM estimated ±47%"} \
        <= set(texts)
    flat = " ".join(texts)
    for field in ("0.6141 J per output token", "6.141 J per query", "accuracy = 0.82", "over 100 prompts",
                  "protocol energy-score (batch 1, 10 new tokens)", "joulescore 0.1.0", "run 20260101-000000-abcdef",
                  "no stars:", "stars need 5"):
        assert field in flat, field


def test_a_short_name_is_never_cut_nor_titled(tmp_path: Path) -> None:
    texts, titles = svg_of(render_label(record(name="$5 $\\alpha$ model"), "★★★☆☆ 3/5 (x)", tmp_path / "l.svg"))
    assert "$5 $\\alpha$ model" in texts  # as typed, never mathtext
    assert "3 of 5 stars" in texts and titles == []


def _meter(**fields: object) -> Meter:
    return Meter.model_validate({"kind": "mixed", **fields})


def test_the_band_is_given_per_domain() -> None:
    mixed = _meter(uncertainty_pct=52.4, per_domain={
        "gpu": {"kind": "measured", "source": "NVML counter"},
        "cpu": {"kind": "estimated", "source": "estimator: CCF Zen 4"},
        "dram": {"kind": "estimated", "source": "estimator: CCF Zen 4"}})
    assert energy_parts(mixed) == ["GPU measured (NVML counter)", "CPU+DRAM estimated ±52%"]
    both = _meter(uncertainty_pct=45, per_domain={
        "cpu": {"kind": "estimated", "source": "estimator: CCF Zen 4"},
        "gpu": {"kind": "estimated", "source": "NVML estimate"}})
    assert energy_parts(both) == ["CPU estimated (estimator: CCF Zen 4)", "GPU estimated (NVML estimate)",
                                  "estimated parts ±45% at most"]
    measured = Meter(kind="measured", sources=["RAPL via powercap /sys/class/powercap"], uncertainty_pct=0,
                     domains=["cpu", "dram"])
    assert energy_parts(measured) == ["CPU+DRAM measured (RAPL via powercap /sys/class/powercap)"]
    older = Meter(kind="estimated", sources=["estimator"], uncertainty_pct=30)  # no domains listed
    assert energy_parts(older, ["cpu"]) == ["CPU estimated ±30%"]
    assert energy_parts(Meter(kind="estimated", domains=["cpu"])) == ["CPU estimated no band stated"]


def test_label_rejects_other_formats(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="must be .svg or .png"):
        render_label(record(), "", tmp_path / "label.pdf")


def test_the_report_run_page_says_the_source_as_the_card_does() -> None:
    from joulescore.report.details import label_of

    mixed = make_record(meter={"kind": "mixed", "sources": ["NVML counter", "estimator"], "uncertainty_pct": 52.4,
                          "per_domain": {"gpu": {"kind": "measured", "source": "NVML counter"},
                                         "cpu": {"kind": "estimated", "source": "estimator"}}})
    assert label_of(mixed)["source"] == "GPU measured (NVML counter); CPU estimated ±52%"
