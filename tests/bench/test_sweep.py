"""Sweeps and the advisor through the CLI, with llama.cpp and a variant that cannot run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli

PLAN = """
name: tiny
task: chat
limit: 2
warmup: 0
max_new_tokens: 3
batch_sizes: [1, 2]
baseline: llama
engines:
  - {name: llama, backend: llama.cpp}
  - {name: broken, backend: transformers, dtype: bf16, quantization: int8}
"""


def test_sweep_stores_each_variant_and_advises(db: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    proc = cli("sweep", str(plan), "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    advice = json.loads(proc.stdout)
    names = [v["variant"] for v in advice["variants"]]
    assert names == ["llama/b1", "llama/b2", "broken/b1", "broken/b2"]
    broken = [v for v in advice["variants"] if v["variant"].startswith("broken")]
    assert all(v["status"] == "failed" and "int8" in v["reason"] for v in broken)
    assert "broken/b1: failed" in proc.stderr
    assert advice["baseline"] == "llama/b1"
    with sqlite3.connect(db) as conn:
        specs = [json.loads(r[0]) for r in conn.execute("SELECT spec_json FROM runs")]
    assert {s["sweep"]["id"] for s in specs} == {advice["sweep_id"]} and len(specs) == 2

    shown = cli("advise", advice["sweep_id"], "--max-quality-drop", "1", "--max-p90-latency", "60s", "--json", db=db)
    assert shown.returncode == 0, shown.stderr
    rec = json.loads(shown.stdout)["recommended"]
    assert rec["variant"] in ("llama/b1", "llama/b2")
    assert rec["energy_ratio_vs_baseline"] == pytest.approx(rec["baseline_j_per_query"] / rec["j_per_query"], rel=1e-3)
    assert rec["quality_delta"] is not None
    assert rec["quality_delta_points"] is None  # chat's length statistic is no score: no points
    human = cli("advise", advice["sweep_id"], "--max-p90-latency", "1ms", db=db)
    assert "no variant meets the limits" in human.stdout
    assert "no better direction" in human.stdout  # chat's length metric cannot rank variants


def test_bad_plans_and_ids_are_one_line_errors(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("engines: []\n")
    assert_one_line_error(cli("sweep", str(bad), db=db), "engines")
    assert_one_line_error(cli("sweep", str(tmp_path / "missing.yaml"), db=db), "cannot read")
    assert_one_line_error(cli("advise", "sweep-nope", db=db), "no sweep")
    assert_one_line_error(cli("advise", "sweep-nope", "--max-p90-latency", "soon", db=db), "duration")


def test_ray_executor_runs_variants_as_ray_tasks(db: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("batch_sizes: [1, 2]", "batch_sizes: [1]")
                    .replace("  - {name: broken, backend: transformers, dtype: bf16, quantization: int8}\n", ""))
    try:
        import ray  # noqa: F401
    except ImportError:
        assert_one_line_error(cli("sweep", str(plan), "--ray", db=db), "pip install")
        return
    proc = cli("sweep", str(plan), "--ray", "--json", db=db, env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 0, proc.stderr
    advice = json.loads(proc.stdout)
    (only,) = advice["variants"]
    assert only["status"] == "complete" and only["j_per_query"] > 0
    with sqlite3.connect(db) as conn:
        (spec,) = [json.loads(r[0]) for r in conn.execute("SELECT spec_json FROM runs")]
        count = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert spec["sweep"]["id"] == advice["sweep_id"] and count == 2


def test_interrupted_sweep_resumes_each_prompt_once(db: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("  - {name: broken, backend: transformers, dtype: bf16, quantization: int8}\n", ""))
    first = json.loads(cli("sweep", str(plan), "--json", db=db).stdout)
    cut = next(v for v in first["variants"] if v["variant"] == "llama/b2")
    with sqlite3.connect(db) as conn:  # as if the sweep died inside this variant's run
        conn.execute("UPDATE sweep_variants SET status='pending', run_id=NULL WHERE variant='llama/b2'")
        conn.execute("DELETE FROM results WHERE run_id=? AND prompt_index=1", (cut["run_id"],))
    proc = cli("sweep", "--resume", first["sweep_id"], "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    again = {v["variant"]: v for v in json.loads(proc.stdout)["variants"]}
    assert again["llama/b2"]["status"] == "complete" and again["llama/b2"]["run_id"] == cut["run_id"]
    assert again["llama/b1"]["run_id"] == next(v["run_id"] for v in first["variants"] if v["variant"] == "llama/b1")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT prompt_index FROM results WHERE run_id=? ORDER BY prompt_index",
                            (cut["run_id"],)).fetchall()
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert rows == [(0,), (1,)] and runs == 2


@pytest.mark.parametrize("name, task", [("plan.yaml", "chat"), ("plan-sentiment.yaml", "sentiment")])
def test_shipped_example_plans_expand_to_the_issue_grid(name: str, task: str) -> None:
    """The examples: five engine settings x batch 1 and 4, 100 prompts, on a task each."""
    from joulescore.bench.sweep import load_plan, variants

    plan = load_plan(Path(__file__).parents[2] / "examples" / name)
    grid = variants(plan)
    assert plan.task == task and plan.limit == 100 and len(grid) == 10
    assert {(c.backend, getattr(c.engine, "quantization", None), c.batch_size) for _, c in grid} == {
        (b, q, n) for b, q in (("llama.cpp", None), ("transformers", None), ("transformers", "int8"),
                               ("onnxruntime", None), ("onnxruntime", "int8")) for n in (1, 4)}
    assert all(c.task == task and c.limit == 100 for _, c in grid)
