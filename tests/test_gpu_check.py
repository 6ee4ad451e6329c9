"""benchmarks/gpu_check.py without a GPU: it refuses in one line, and its pure pieces hold."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_exits_1_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    # no GPU on any machine: none visible (a GPU machine's NVML honours the empty list), or no NVML at all
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""},
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no usable NVIDIA GPU: ") and "Traceback" not in lines[0]
    assert not out.exists()


def test_counter_vs_polled_and_overhead() -> None:
    check = load_check()
    near = check.counter_vs_polled(1000.0, 1015.0, 2.0)
    assert near["diff_pct"] == 1.5 and near["within_target"] is True
    far = check.counter_vs_polled(1000.0, 970.0, 2.0)
    assert far["diff_pct"] == -3.0 and far["within_target"] is False
    assert check.counter_vs_polled(0.0, 5.0, 2.0)["within_target"] is None
    o = check.overhead(950.0, 1000.0)
    assert o["ratio"] == 0.95 and o["overhead_pct"] == 5.0
    assert check.overhead(None, 1000.0)["ratio"] is None


def test_budget_skips_a_section_that_does_not_fit_and_records_errors() -> None:
    check = load_check()
    now = [0.0]
    budget = check.Budget(100.0, clock=lambda: now[0])
    report: dict = {"sections": {}}
    assert check.section(report, "idle", budget, lambda: {"w": 1.0}) == {"w": 1.0}
    now[0] = 90.0  # 10 s left; the matmul needs more
    assert check.section(report, "matmul", budget, lambda: {"never": True}) is None
    assert "skipped" in report["sections"]["matmul"]
    now[0] = 0.0

    def broken() -> dict:
        raise RuntimeError("CUDA out of memory\nmore detail")

    assert check.section(report, "plain", budget, broken) is None
    assert report["sections"]["plain"] == {"error": "RuntimeError: CUDA out of memory"}
    assert report["sections"]["idle"]["w"] == 1.0 and "section_s" in report["sections"]["idle"]


def test_harness_figures_read_a_real_record(db: Path) -> None:
    """The fields the check reads exist in a record made by the real CLI (the vLLM stand-in, batch 4)."""
    env = {"PYTHONPATH": str(Path(__file__).parent / "fake_vllm")}
    proc = cli("run", "--backend", "vllm", "--model", "some/model", "--batch-size", "4", "--limit", "4",
               "--warmup", "0", "--max-new-tokens", "3", "--json", "--no-progress", db=db, env=env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    figures = load_check().harness_figures(record)
    assert figures["queries"] == 4 and figures["output_tokens"] == 12 and figures["status"] == "complete"
    assert figures["tokens_per_s"] == record["tokens_per_s"] and figures["tokens_per_s"] > 0
    assert "gpu_wh_per_1000_queries" in record and figures["gpu_wh_per_1000_queries"] is None  # no GPU metered
    assert figures["gpu_j_per_token"] is None and figures["steady_state"]["output_tokens"] == 8
    assert figures["meter_kind"] == record["meter"]["kind"]
