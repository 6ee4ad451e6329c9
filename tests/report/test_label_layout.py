"""The label's layout: on hostile records no two texts overlap, every text stays on the card, no name breaks."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from joulescore.model.record import RunRecord
from joulescore.report.label import (
    CARD_H_IN,
    CARD_W_IN,
    PNG_DPI,
    hardware_items,
    layout_label,
    render_label,
    text_boxes,
)
from joulescore.report.label_layout import CARD
from tests.records import make_record

LONG_CPU = "AMD EPYC 9654P 96-Core Processor with an improbably long marketing suffix (Zen 4 (Genoa))"
AIES = ("AI Energy Score: PROJECTED ★★★☆☆ to ★★★★☆ (band 0.31-0.57 Wh per 1,000 queries; the published scale "
        "measures an H100 with 1,000 prompts, this run is projected from its tokens per query)")
MIXED_METER = {
    "kind": "mixed", "sources": ["NVML counter", "estimator: CCF Zen 4", "CCF", "Boavizta"], "uncertainty_pct": 52.4,
    "domains": ["cpu", "dram", "gpu"],
    "per_domain": {"gpu": {"kind": "measured", "source": "NVML counter"},
                   "cpu": {"kind": "estimated", "source": "estimator: CCF Zen 4"},
                   "dram": {"kind": "estimated", "source": "estimator: CCF Zen 4"}}}
DISTURBED = {"measured": True, "disturbed": True, "reason": "other processes used 48% of the machine's CPU"}


def _gpus(names: list[str]) -> list[dict[str, Any]]:
    return [{"index": i, "name": n, "uuid": f"GPU-{i}"} for i, n in enumerate(names)]


#: (name, record, stars line, AI Energy Score line)
HOSTILE: list[tuple[str, RunRecord, str, str | None]] = [
    ("long-model", make_record(model={"name": "org/" + "very-long-model-name-" * 9 + "Q4_K_M.gguf"}),
     "★★★★☆ 4/5 (equal-bins over 6 runs)", AIES),
    ("eight-gpus", make_record(hardware={"cpu": LONG_CPU, "logical_cpus": 384, "gpus": _gpus(
        ["NVIDIA H100 80GB HBM3"] * 4 + ["NVIDIA A100-SXM4-80GB"] * 3 + ["NVIDIA GeForce RTX 4090 D"])},
        meter=MIXED_METER), "no stars: peer group has 1 run(s), stars need 5", AIES),
    ("mixed-amd-h200", make_record(hardware={"cpu": "AMD EPYC (Zen 4 (Genoa))", "gpus": _gpus(["NVIDIA H200"])},
                                   meter=MIXED_METER), "★★☆☆☆ 2/5 (equal-bins over 6 runs)", AIES),
    ("disturbed", make_record(interference=DISTURBED, interval={
        "method": "m", "n": 10, "j_per_query_low": 5.0, "j_per_query_high": 7.0,
        "wh_per_1000_queries_low": 1.389, "wh_per_1000_queries_high": 1.944}),
     "DISTURBED, not rated: other processes used 48% of the machine's CPU", AIES),
    ("no-aies", make_record(meter={"kind": "measured", "sources": ["RAPL via powercap /sys/class/powercap"],
                                   "uncertainty_pct": 0, "domains": ["cpu", "dram"]}),
     "★★★★★ 5/5 (equal-bins over 6 runs)", None),
    ("everything", make_record(model={"name": "m" * 200}, task={"name": "t" * 120},
                               hardware={"cpu": "C" * 150, "logical_cpus": 384, "gpus": _gpus(
                                   [f"NVIDIA GPU model number {i} with a long name" for i in range(8)])},
                               meter=MIXED_METER, interference=DISTURBED, run_id="r" * 80,
                               config={"protocol": "p" * 60}),
     "DISTURBED, not rated: " + "a reason that goes on and on " * 8, AIES + " " + AIES),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_no_text_overlaps_and_all_stays_on_the_card(case: tuple[str, RunRecord, str, str | None]) -> None:
    _, record, stars, aies = case
    fig, _ = layout_label(record, stars, aies)
    boxes = text_boxes(fig)
    assert len(boxes) >= 12
    for text, box in boxes:
        assert CARD.x0 <= box.x0 and box.x1 <= CARD.x1 and CARD.y0 <= box.y0 and box.y1 <= CARD.y1, text
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), (a, b)


def _svg(path: Path) -> tuple[list[str], list[str]]:
    """Each text element's text, and each <title>'s text."""
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    texts = ["".join(t.itertext()) for t in root.iter() if t.tag.split("}")[-1] == "text"]
    titles = [t.text or "" for t in root.iter() if t.tag == "{http://www.w3.org/2000/svg}title"]
    return texts, titles


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_every_name_is_whole_in_one_text_or_its_title(case: tuple[str, RunRecord, str, str | None],
                                                     tmp_path: Path) -> None:
    name, record, stars, aies = case
    texts, titles = _svg(render_label(record, stars, tmp_path / f"{name}.svg", aies))
    for item in [record.model.name, record.task.name, *hardware_items(record)]:
        assert any(item in t for t in texts) or any(item in t for t in titles), item
    assert ("DISTURBED" in texts) == (record.interference is not None)  # in the stars' place
    assert ("AI ENERGY SCORE (PUBLISHED SCALE)" in texts) == (aies is not None)
    band = "GPU measured (NVML counter); CPU+DRAM estimated ±52%"  # wrapped or not, the parts read in order
    assert (band in " ".join(texts)) == (record.meter.kind == "mixed")
    for gid_title in titles:  # a <title> only where a value was cut
        assert gid_title and not any(gid_title == t for t in texts)


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_png_and_svg_come_from_the_same_layout(case: tuple[str, RunRecord, str, str | None], tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    _, record, stars, aies = case
    png = render_label(record, stars, tmp_path / "l.png", aies)
    assert mpimg.imread(png).shape[:2] == (CARD_H_IN * PNG_DPI, CARD_W_IN * PNG_DPI)
    texts, _ = _svg(render_label(record, stars, tmp_path / "l.svg", aies))
    assert sorted(t for t in texts) == sorted(text.replace("\\$", "$") for text, _ in text_boxes(
        layout_label(record, stars, aies)[0]))
