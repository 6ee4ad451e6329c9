"""The AI Energy Score view: published bands, comparable / PROJECTED / none lines, board, label and CLI.

Bands are checked on hand-made scales with known edges and on every shipped row; runs come from
``make_record`` (in-process) or a real SQLite store (CLI); NVML is the stand-in only in the GPU run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_one_line_error, cli
from records import make_record

from joulescore import __version__
from joulescore.reference import load_table
from joulescore.report.aies import (
    AiesView,
    Scale,
    _place,
    aies_view,
    band_stars,
    bands_table,
    board_rows,
    derive_bands,
    scales,
)
from joulescore.report.aies import Published as Pub
from joulescore.store.record import build_record
from joulescore.store.sqlite import ResultRow, Store

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parents[1] / "fake_nvml_rising"
H100 = {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
GPU_METER = {"kind": "measured", "domains": ["gpu"], "includes": ["gpu"], "sources": ["nvml"]}


# --- bands on hand-made scales ---------------------------------------------------------------------

def test_bands_cut_min_max_in_five_equal_sections() -> None:
    bands = derive_bands([10.0, 0.0, 3.0])
    assert [(b.stars, b.low_wh, b.high_wh) for b in bands] == [
        (5, 0.0, 2.0), (4, 2.0, 4.0), (3, 4.0, 6.0), (2, 6.0, 8.0), (1, 8.0, 10.0)]


@pytest.mark.parametrize(("wh", "stars"), [(0.0, 5), (1.999, 5), (2.0, 4), (5.0, 3), (7.99, 2), (8.0, 1),
                                           (10.0, 1), (-3.0, 5), (42.0, 1)])
def test_a_figure_takes_the_band_it_falls_in_and_the_scale_never_stretches(wh: float, stars: int) -> None:
    assert band_stars(derive_bands([0.0, 10.0]), wh) == stars


def test_a_projected_band_that_crosses_an_edge_is_a_star_range() -> None:
    rows = tuple(Pub(m, wh, 0, "s") for m, wh in (("a", 0.0), ("b", 3.0), ("c", 10.0)))
    scale = Scale("v1", "text_generation", "chat", "A", rows, derive_bands([0.0, 10.0]))
    view = AiesView("projected", "")
    _place(view, scale, central=3.5, low=1.0, high=4.5)
    assert (view.stars_low, view.stars_high) == (3, 5)  # the high end (4.5) is 3 stars, the low end (1.0) is 5
    assert view.between == ["b", "c"] and (view.rank, view.of) == (3, 4)


# --- the shipped scale ------------------------------------------------------------------------------

def test_every_shipped_row_has_a_source_and_its_stars_fit_the_bands() -> None:
    rows = load_table("ai_energy_score")
    assert len(rows) > 50
    for r in rows:
        assert r["source"].strip() and r["leaderboard_version"] and r["stars"] in "12345", r
        assert float(r["gpu_wh_per_1000_queries"]) == pytest.approx(float(r["published_kwh_per_1000_queries"]) * 1000)
    for (task, cls), scale in scales().items():
        for p in scale.rows:
            assert scale.stars_for(p.wh_per_1000) == p.stars, (task, cls, p)
        assert min(p.wh_per_1000 for p in scale.rows) == scale.bands[0].low_wh  # 5-star band starts at the min
        assert max(p.wh_per_1000 for p in scale.rows) == pytest.approx(scale.bands[-1].high_wh)


def test_the_shipped_bands_are_the_ones_the_rule_gives() -> None:
    shipped = load_table("ai_energy_score_bands")
    derived = bands_table()
    assert [dict(r) for r in shipped] == derived
    assert all(r["source"] for r in load_table("ai_energy_score_tasks"))


def test_text_generation_is_split_by_class_and_other_tasks_are_not() -> None:
    keys = set(scales())
    assert {("chat", "A"), ("chat", "B"), ("chat", "C")} <= keys
    assert {("sentiment", ""), ("sentence-similarity", ""), ("extractive-qa", ""), ("summarization", "")} <= keys


# --- comparable / projected / none ---------------------------------------------------------------------

def test_a_measured_h100_run_under_the_energy_score_protocol_is_comparable() -> None:
    record = make_record(task={"name": "chat"}, hardware=H100, meter=GPU_METER, gpu_wh_per_1000_queries=7.0)
    v = aies_view(record)
    assert v.status == "comparable" and v.hardware == "NVIDIA H100 80GB HBM3"
    scale = scales()[("chat", "A")]
    assert (v.stars_low, v.stars_high) == (scale.stars_for(7.0),) * 2 == (4, 4)
    below, above = v.between
    assert below and above and "between" in v.line and "MEASURED" in v.line and "PROJECTED" not in v.line
    assert [p.wh_per_1000 for p in scale.rows if p.model in (below, above)] == sorted(
        [p.wh_per_1000 for p in scale.rows if p.model in (below, above)])
    assert v.input_tokens_per_query == 40 and v.output_tokens_per_query == 10
    assert v.leaderboard_input_tokens_per_query == pytest.approx(369.139)


def test_an_h200_is_comparable_and_says_so() -> None:
    record = make_record(task={"name": "sentiment"}, hardware={"gpus": [{"name": "NVIDIA H200"}]},
                         meter=GPU_METER, gpu_wh_per_1000_queries=0.5)
    v = aies_view(record)
    assert v.status == "comparable" and "NVIDIA H200" in v.line and "not the H100" in v.line
    assert "text classification" in str(v.scale)


def test_a_cpu_run_gets_a_projected_line_with_its_band() -> None:
    v = aies_view(make_record(task={"name": "chat"}))
    assert v.status == "projected" and v.line.startswith("PROJECTED") and "band" in v.line
    low, central, high = v.low_wh_per_1000_queries, v.gpu_wh_per_1000_queries, v.high_wh_per_1000_queries
    assert low is not None and central is not None and high is not None and low <= central <= high
    scale = scales()[("chat", "A")]
    assert (v.stars_low, v.stars_high) == (scale.stars_for(high), scale.stars_for(low))
    assert "not a measurement" in v.line and "MEASURED" not in v.line


def test_another_protocol_on_an_h100_is_projected_not_comparable() -> None:
    record = make_record(task={"name": "chat"}, hardware=H100, meter=GPU_METER, gpu_wh_per_1000_queries=7.0,
                         config={"protocol": "natural"})
    v = aies_view(record)
    assert v.status == "projected" and "protocol natural" in v.line


@pytest.mark.parametrize(("over", "why"), [
    ({"task": {"name": "sentence-similarity"}, "model": {"backend": "encoder"}}, "encoder"),
    ({"task": {"name": "reasoning"}}, "only in v2"),
    ({"task": {"name": "my-task"}}, "no table for task 'my-task'"),
    ({"status": "partial"}, "the run is partial"),
    ({"task": {"name": "chat"}, "interference": {"measured": True, "disturbed": True,
                                                 "reason": "other processes used 48% of the machine's CPU"}},
     "DISTURBED (other processes used 48%"),
    ({"task": {"name": "chat"}, "model": {"parameters": None, "extra": {}}}, "parameter count"),
])
def test_no_line_says_why(over: dict[str, Any], why: str) -> None:
    v = aies_view(make_record(**over))
    assert v.status == "none" and v.line.startswith("no AI Energy Score:") and why in v.line, v.line


def test_the_aies_board_places_runs_among_the_published_rows() -> None:
    cpu = make_record(run_id="cpu-run", task={"name": "chat"})
    gpu = make_record(run_id="gpu-run", task={"name": "chat"}, hardware=H100, meter=GPU_METER,
                      gpu_wh_per_1000_queries=7.0)
    enc = make_record(run_id="enc-run", task={"name": "sentence-similarity"}, model={"backend": "encoder"})
    rows = board_rows([cpu, gpu, enc])
    mine = {r["run_or_source"]: r for r in rows}
    assert mine["gpu-run"]["mark"] == "MEASURED" and mine["cpu-run"]["mark"] == "PROJECTED"
    assert mine["enc-run"]["scale"] is None and "encoder" in mine["enc-run"]["mark"]
    class_a = [r for r in rows if r["scale"] == scales()[("chat", "A")].title]
    assert [r["wh_per_1000"] for r in class_a] == sorted(r["wh_per_1000"] for r in class_a)
    assert len(class_a) == len(scales()[("chat", "A")].rows) + 2
    assert all(r["task"] == "chat" for r in board_rows([cpu], "chat"))


# --- through the CLI ------------------------------------------------------------------------------

def _stored_run(db: Path, run_id: str = "run-a") -> None:
    spec = {"config": {"model": "smollm2-135m", "task": "chat", "protocol": "energy-score", "max_new_tokens": 10,
                       "batch_size": 1, "warmup": 0},
            "model": {"name": "SmolLM2-135M-Instruct", "path": None, "backend": "llama.cpp", "quantization": "Q4_1",
                      "parameters": 134_515_008, "architecture": "llama", "extra": {"size_bytes": 98_000_000}},
            "task": {"name": "chat", "dataset": "chat.jsonl", "num_prompts": 4, "metric": "length"},
            "hardware": {"cpu": "Intel(R) Xeon(R) Processor (Emerald Rapids)",
                         "cpu_microarchitecture": "Emerald Rapids", "logical_cpus": 2, "ram_gb": 8.0, "gpus": []},
            "meter": {"kind": "estimated", "sources": ["estimator"], "includes": ["cpu", "dram"],
                      "uncertainty_pct": 30.0, "notes": [], "domains": ["cpu", "dram"]}}
    with Store(db) as store:
        store.create_run(run_id, 4, spec)
        for i in range(4):
            store.add_result(run_id, ResultRow(
                prompt_index=i, prompt_id=f"p{i}", ok=True, error=None, finish_reason="length", input_tokens=40,
                output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=2.0, decode_j=6.0, low_j=5.6, high_j=10.4,
                domains={"cpu": 6.4, "dram": 1.6}, text="x " * 10))
        store.set_status(run_id, "complete", build_record(store.get_run(run_id), store.results(run_id), __version__))


def test_show_board_and_label_carry_the_projected_line(db: Path, tmp_path: Path) -> None:
    _stored_run(db)
    shown = cli("show", "run-a", db=db)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("AI Energy Score"))
    assert "PROJECTED" in line and "band" in line and "no stars: peer group" in shown.stdout  # both views
    record = json.loads(cli("show", "run-a", "--json", db=db).stdout)
    assert record["ai_energy_score"]["status"] == "projected"
    assert record["ai_energy_score"]["input_tokens_per_query"] == 40
    board = cli("board", "--scale", "aies", "--task", "chat", db=db)
    assert board.returncode == 0 and "PROJECTED" in board.stdout and "distilbert/distilgpt2" in board.stdout
    label = tmp_path / "label.svg"
    assert cli("label", "run-a", "-o", str(label), db=db).returncode == 0
    svg = label.read_text(encoding="utf-8")
    assert "AI ENERGY SCORE (PUBLISHED SCALE)" in svg and "PROJECTED" in svg


def test_an_unknown_scale_is_a_one_line_error(db: Path) -> None:
    assert_one_line_error(cli("board", "--scale", "global", db=db), "unknown scale", "local or aies")


def test_the_shipped_tables_read_as_csv_with_one_header() -> None:
    for name in ("ai_energy_score", "ai_energy_score_bands", "ai_energy_score_tasks"):
        text = resources.files("joulescore.reference").joinpath("data", f"{name}.csv").read_text(encoding="utf-8")
        header, *body = list(csv.reader(io.StringIO(text)))
        assert header[-1] == "source" and all(len(r) == len(header) for r in body), name


@pytest.mark.slow
def test_a_stand_in_h200_run_gets_a_comparable_line(db: Path, tmp_path: Path, smollm2_folder: Path) -> None:
    # a GPU of its own and thresholds that a busy test machine cannot cross: this test is about the scale
    # (SmolLM2 as the session's model folder: the same weights, without dequantizing the GGUF again)
    # the stand-in's one GPU made visible: the suite hides the machine's own GPUs (conftest.py)
    env = {"PYTHONPATH": os.pathsep.join([str(SHIM), str(ROOT)]), "FAKE_NVML_POWER_W": "300",
           "CUDA_VISIBLE_DEVICES": "0", "FAKE_NVML_OTHER_PIDS": ""}
    proc = cli("run", "--backend", "transformers", "--model", str(smollm2_folder), "--device", "cpu",
               "--limit", "2", "--warmup", "0", "--max-new-tokens", "3",
               "--disturbed-cpu-pct", "100", "--disturbed-steal-pct", "100",
               "--json", "--no-progress", "--out", str(tmp_path / "out"), db=db, env=env)
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)["ai_energy_score"]
    assert view["status"] == "comparable" and "NVIDIA H200" in view["line"], view
    assert view["scale"].startswith("AI Energy Score v1 text generation, class A")
    assert view["stars_low"] == view["stars_high"] and view["rank"] >= 1
