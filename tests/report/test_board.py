"""Board rules on fixed boards: star rules, peer groups, size classes, Pareto, references."""

from __future__ import annotations

from dataclasses import replace

import pytest

from joulescore.model.record import RunRecord
from joulescore.report.board import (
    BoardRow,
    build_board,
    equal_bin_stars,
    pareto,
    quintile_stars,
    rate,
    reference_rows,
    size_class,
    stars_line,
)
from tests.records import make_record


def run(wh: float, task: str = "sentiment", hw: str = "CPU Emerald Rapids", protocol: str = "energy-score",
        size: str = "A", quality: float | None = 0.5, run_id: str | None = None) -> BoardRow:
    return BoardRow(model=f"m{wh}", task=task, wh_per_1000=wh, j_per_token=wh / 10, quality=quality,
                    quality_metric="accuracy", higher_is_better=True, hardware=hw, hardware_class=hw,
                    protocol=protocol, size_class=size, kind="estimated", run_id=run_id or f"r{wh}-{task}-{hw}")


def test_equal_bins_cut_the_energy_range_in_five() -> None:
    # range 10..20, bins of 2: [10,12) 5, [12,14) 4, [14,16) 3, [16,18) 2, [18,20] 1
    assert equal_bin_stars([10, 11.9, 12, 15, 17.5, 18, 20]) == [5, 5, 4, 3, 2, 1, 1]
    assert equal_bin_stars([3, 3, 3, 3, 3]) == [5] * 5
    # one outlier squeezes everyone else into the top bin: that is the equal-bins rule
    assert equal_bin_stars([1, 1.1, 1.2, 1.3, 100]) == [5, 5, 5, 5, 1]


def test_quintile_ranks_by_fifths() -> None:
    assert quintile_stars([1, 1.1, 1.2, 1.3, 100]) == [5, 4, 3, 2, 1]
    assert quintile_stars(list(range(10))) == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert quintile_stars([2, 1, 1, 3, 4]) == [3, 5, 5, 2, 1]  # the two 1s share rank 0


def test_rate_applies_the_rule_inside_a_peer_group() -> None:
    rows = rate([run(w) for w in (10, 12, 14, 16, 20)], "equal-bins")
    assert {r.wh_per_1000: r.stars for r in rows} == {10: 5, 12: 4, 14: 3, 16: 2, 20: 1}
    assert "equal-bins over 5 runs" in rows[0].stars_note
    assert stars_line(rows[0]).startswith("★★★★★ 5/5")
    q = rate([run(w) for w in (1, 1.1, 1.2, 1.3, 100)], "quintile")
    assert sorted(r.stars for r in q) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        rate([run(1)], "deciles")  # type: ignore[arg-type]


def test_small_peer_groups_get_no_stars_and_say_why() -> None:
    rows = rate([run(w) for w in (1, 2, 3, 4)])
    assert all(r.stars is None for r in rows)
    assert "peer group has 4 run(s), stars need 5" in rows[0].stars_note
    assert stars_line(rows[0]).startswith("no stars")


def test_peer_groups_never_mix_task_hardware_protocol_or_size() -> None:
    base = [run(w) for w in (10, 11, 12, 13, 14)]
    intruders = [run(0.001, task="chat"), run(0.001, hw="GPU NVIDIA H100 x1"), run(0.001, protocol="natural"),
                 run(0.001, size="B")]
    rated = {r.run_id: r for r in rate(base + intruders)}
    # the intruders are far cheaper; had they joined, 14 Wh would not be 1 star and 10 not 5
    assert [rated[r.run_id].stars for r in base] == [5, 4, 3, 2, 1]
    assert all(rated[r.run_id].stars is None for r in intruders)


def test_size_classes_follow_bytes_then_parameters() -> None:
    assert size_class(100e6, None) == "A"
    assert size_class(24e9, None) == "A"
    assert size_class(24.1e9, None) == "B"
    assert size_class(None, 40e9) == "B"  # 40 B parameters x 2 bytes = 80 GB: still one cloud GPU
    assert size_class(None, 41e9) == "C"
    assert size_class(None, None) is None


def test_hardware_class() -> None:
    from joulescore.model.sections import Hardware

    assert Hardware(cpu="Xeon", cpu_microarchitecture="Emerald Rapids").hardware_class() == "CPU Emerald Rapids"
    assert Hardware(cpu="Xeon", gpus=[{"name": "NVIDIA H100"}, {"name": "NVIDIA H100"}]).hardware_class() == \
        "GPU NVIDIA H100 x2"


def test_pareto_marks_the_energy_quality_frontier() -> None:
    rows = [run(1, quality=0.5), run(2, quality=0.9), run(3, quality=0.7), run(4, quality=0.95),
            run(5, quality=None), run(1.5, task="chat", quality=0.1)]
    marked = {r.run_id: r.pareto for r in pareto(rows)}
    assert [marked[r.run_id] for r in rows[:4]] == [True, True, False, True]
    assert marked[rows[4].run_id] is None
    assert marked[rows[5].run_id] is True  # alone in its own group
    lower = [replace(run(1, quality=0.2), higher_is_better=False), replace(run(2, quality=0.1), higher_is_better=False),
             replace(run(3, quality=0.3), higher_is_better=False)]
    assert [r.pareto for r in pareto(lower)] == [True, True, False]


def test_reference_rows_are_labelled_and_never_rated() -> None:
    refs = reference_rows("chat")
    assert refs and all(r.is_reference and r.source and r.kind == "published" for r in refs)
    llama = next(r for r in refs if r.model == "meta-llama/Llama-3.1-8B-Instruct" and "H100" in r.hardware)
    assert llama.wh_per_1000 == pytest.approx(27.84 * 1000 / 3600)
    assert not reference_rows("sentiment")
    rated = rate([*refs, *(run(w, task="chat") for w in (1, 2, 3, 4, 5))])
    assert all(r.stars is None for r in rated if r.is_reference)
    assert sorted(r.stars for r in rated if not r.is_reference) == [1, 2, 3, 4, 5]


def _record(run_id: str, wh: float, task: str = "sentiment", status: str = "complete") -> RunRecord:
    return make_record(run_id=run_id, status=status, model={"name": "SmolLM2"}, task={"name": task},
                       hardware={"cpu": "Xeon"}, quality={"metric": "accuracy", "value": 0.5},
                       wh_per_1000_queries=wh, j_per_output_token=wh / 10)


def test_build_board_from_records_skips_unfinished_and_adds_references() -> None:
    records = [_record(f"r{i}", w) for i, w in enumerate((5, 4, 3, 2, 1))]
    records.append(_record("partial", 0.1, status="partial"))
    records.append(_record("c1", 1, task="chat"))
    board = build_board(records, task="sentiment")
    assert [r.run_id for r in board] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.stars for r in board] == [5, 4, 3, 2, 1]
    chat = build_board(records, task="chat")
    assert chat[0].run_id == "c1" and chat[0].stars is None
    assert len(chat) > 1 and all(r.is_reference for r in chat[1:])
