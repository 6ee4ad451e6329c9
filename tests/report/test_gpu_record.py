"""GPUs in every record: the metered GPU's facts, its energy beside the headline, and who else used it.

NVML is replaced at its import boundary only (a ``pynvml`` stand-in on PYTHONPATH
for the CLI, ``FakeNvml`` in-process); the meter, runner, record, board, label
and floor above it are the real code.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import cli

from joulescore.meters.nvml import NvmlMeter
from tests.fake_nvml import FakeGpu, FakeNvml

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parents[1] / "fake_nvml_rising"


def test_the_meter_describes_its_gpus_and_who_shares_them() -> None:
    meter = NvmlMeter(nvml=FakeNvml(FakeGpu(name="NVIDIA H200", uuid="GPU-1", energy_mj=5, processes=[(1, 10**9)])),
                      sync=None, env={})
    (gpu,) = meter.devices()
    assert gpu == {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-1", "memory_gb": 80.0, "power_limit_w": 700.0,
                   "driver_version": "560.35.03", "energy_method": "counter"}
    assert meter.sharing() == [{"gpu": "gpu0", "pid": 1, "name": meter.sharing()[0]["name"], "memory_mb": 1000}]
    mine = NvmlMeter(nvml=FakeNvml(FakeGpu(processes=[(os.getpid(), 10**9)])), sync=None, env={})
    assert mine.sharing() == []  # our own process is not "another" user


def test_a_driver_without_a_query_leaves_that_fact_empty() -> None:
    gpu = FakeGpu(errors={"memory": 3, "power_limit": 3})
    (facts,) = NvmlMeter(nvml=FakeNvml(gpu), sync=None, env={}).devices()
    assert facts["memory_gb"] is None and facts["power_limit_w"] is None and facts["name"] == gpu.name


@pytest.mark.slow
def test_a_gpu_run_records_the_gpu_everywhere(db: Path, tmp_path: Path, smollm2_folder: Path) -> None:
    # the stand-in's one GPU made visible: the suite hides the machine's own GPUs (conftest.py)
    env = {"PYTHONPATH": os.pathsep.join([str(SHIM), str(ROOT)]), "FAKE_NVML_POWER_W": "300",
           "CUDA_VISIBLE_DEVICES": "0"}
    # transformers on the CPU here (no CUDA), metered by the stand-in GPU: the path a GPU user takes
    # (SmolLM2 as the session's model folder: the same weights, without dequantizing the GGUF again)
    proc = cli("run", "--backend", "transformers", "--model", str(smollm2_folder), "--device", "cpu",
               "--limit", "2", "--warmup", "0",
               "--max-new-tokens", "3", "--json", "--no-progress", "--out", str(tmp_path / "out"), db=db, env=env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["meter"]["kind"] == "mixed"
    assert record["meter"]["per_domain"]["gpu"]["kind"] == "measured"
    assert record["meter"]["per_domain"]["cpu"]["kind"] == "estimated"
    (gpu,) = record["hardware"]["gpus"]
    assert gpu["name"] == "NVIDIA H200" and gpu["memory_gb"] == 141.0 and gpu["uuid"] == "GPU-h200-fake-0"
    # the stand-in draws 300 W: the GPU energy is that power over the measured windows
    assert record["energy"]["gpu_j"] == pytest.approx(300 * record["duration_s"], rel=0.05)
    assert record["gpu_wh_per_1000_queries"] == pytest.approx(
        record["energy"]["gpu_j"] / record["counts"]["succeeded"] * 1000 / 3600, rel=1e-3)
    assert record["hardware"]["other_gpu_processes"][0]["pid"] == 1
    assert any("the GPU is shared" in n for n in record["meter"]["notes"])
    # another compute process on the GPU disturbs the run: shown, never rated
    assert record["interference"]["disturbed"]
    assert any("other compute processes ran on the GPU (pid 1)" in r for r in record["interference"]["reasons"])

    board = json.loads(cli("board", "--json", db=db, env=env).stdout)
    mine = next(r for r in board if r["run_id"] == record["run_id"])
    assert mine["hardware_class"] == "GPU NVIDIA H200 x1"
    label = tmp_path / "label.svg"
    assert cli("label", record["run_id"], "-o", str(label), db=db, env=env).returncode == 0
    root = ET.fromstring(label.read_text(encoding="utf-8"))
    texts = ["".join(t.itertext()) for t in root.iter() if t.tag.split("}")[-1] == "text"]
    assert any("NVIDIA H200" in t for t in texts)  # the GPU's name whole, in one text (never wrapped)
    meter = record["meter"]  # the band belongs to the estimated domains, the GPU says its counter
    assert f"GPU measured ({meter['per_domain']['gpu']['source']}); CPU+DRAM estimated ±" \
           f"{meter['uncertainty_pct']:.0f}%" in " ".join(texts)
    impact = json.loads(cli("impact", record["run_id"], "--json", db=db, env=env).stdout)
    assert "H200" in impact["floor"]["hardware"] and impact["floor"]["table_row"]
