"""The typed run record: built from stored rows, stored, loaded, serialized, and valid against its schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from joulescore.model.record import SCHEMA_VERSION, RunRecord, record_schema
from joulescore.store.sqlite import ResultRow, Store
from tests.records import BASE, make_record

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "config": {"model": "m", "task": "chat", "protocol": "energy-score", "max_new_tokens": 10, "batch_size": 1},
    "model": {"name": "tiny", "path": None, "backend": "llama.cpp", "quantization": "Q4_1", "parameters": 1000},
    "task": {"name": "chat", "dataset": "chat.jsonl", "num_prompts": 2, "metric": "length"},
    "hardware": {"cpu": "Xeon", "cpu_microarchitecture": None, "logical_cpus": 2, "ram_gb": 8.0},
    "meter": {"kind": "estimated", "sources": ["estimator"], "includes": ["cpu"], "uncertainty_pct": 30.0,
              "notes": [], "domains": ["cpu"]},
    "reasoning": None,
    "sweep": {"id": "sweep-1", "variant": "llama.cpp/b1"},
    "tool_version": "0.1.0",
}


def _store_run(db: Path) -> Store:
    store = Store(db)
    store.create_run("r1", 2, SPEC)
    for i in range(2):
        store.add_result("r1", ResultRow(
            prompt_index=i, prompt_id=f"p{i}", ok=True, error=None, finish_reason="length", input_tokens=20,
            output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=1.0, decode_j=3.0, low_j=3.0, high_j=6.0,
            domains={"cpu": 4.0}, text="hello"))
    return store


def test_record_round_trip_through_the_store_and_json(tmp_path: Path) -> None:
    store = _store_run(tmp_path / "r.db")
    record = store.record("r1")
    assert isinstance(record, RunRecord)
    assert record.schema_version == SCHEMA_VERSION
    assert record.energy.total_j == pytest.approx(8.0)
    assert record.energy.cpu_j == pytest.approx(8.0) and record.energy.gpu_j is None
    assert record.sweep is not None and record.sweep.id == "sweep-1"
    assert record.tool.version == "0.1.0"
    store.set_status("r1", record.status, record)
    loaded = store.records()[0]
    assert loaded == record
    again = RunRecord.model_validate_json(json.dumps(record.as_json()))
    assert again == record


def test_every_record_validates_against_the_published_schema(tmp_path: Path) -> None:
    schema = json.loads((ROOT / "docs" / "run-record.schema.json").read_text(encoding="utf-8"))
    assert schema == record_schema(), "docs/run-record.schema.json is stale: python -m joulescore.model.record"
    record = _store_run(tmp_path / "r.db").record("r1")
    jsonschema.validate(record.as_json(), schema)
    jsonschema.validate(make_record().as_json(), schema)
    broken = record.as_json()
    broken["energy"]["total_j"] = "a lot"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_a_record_written_by_an_older_release_still_loads() -> None:
    old = json.loads(json.dumps(BASE))
    old.pop("schema_version", None)
    old["counts"].pop("cached_input_tokens", None)  # added after 0.1.0's first records
    old["some_future_section"] = {"x": 1}
    record = RunRecord.model_validate(old)
    assert record.counts.cached_input_tokens == 0
    assert record.schema_version == SCHEMA_VERSION


def test_a_typo_in_a_record_field_fails_where_a_stored_record_loads(tmp_path: Path) -> None:
    record = _store_run(tmp_path / "r.db").record("r1").as_json()
    typo = {**record, "energy": {**record["energy"], "totl_j": 1.0}}
    with pytest.raises(ValidationError, match="totl_j"):
        RunRecord.build(typo)
    assert RunRecord.load(typo) == RunRecord.build(record)  # the loading path leaves the unknown key out
    misnamed = {**record, "model": {**record["model"], "paramters": 7}}  # ModelInfo, the engines' own type too
    with pytest.raises(ValidationError, match="paramters"):
        RunRecord.build(misnamed)
    assert RunRecord.load(misnamed) == RunRecord.build(record)


def test_records_of_the_0_1_0_database_load_on_the_tolerant_path(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "joulescore-0.1.0.db", db)
    with Store(db) as store:
        records = store.records()
        stored = [run.record for run in store.list_runs() if run.record]
    assert [r.run_id for r in records] == ["20261202-002358-a47230", "20261202-002407-3c1630"]
    assert all(r.tool.version == "0.1.0" and r.energy.total_j > 0 for r in records)
    # a key a later version dropped, at the top and inside a section, is left out rather than refused
    older = {**stored[0], "retired_figure": 1.0, "hardware": {**stored[0]["hardware"], "gpu_names": ["x"]}}
    with pytest.raises(ValidationError):
        RunRecord.build(older)
    assert RunRecord.load(older).hardware == records[0].hardware


def test_the_gpus_are_typed_strict_when_built_and_tolerant_when_loaded(tmp_path: Path) -> None:
    record = _store_run(tmp_path / "r.db").record("r1").as_json()
    gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_gb": 85.0, "power_limit_w": 700.0,
           "driver_version": "550.54", "energy_method": "counter"}
    process = {"gpu": "gpu0", "pid": 42, "name": "python", "memory_mb": 512}
    record["hardware"] = {**record["hardware"], "gpus": [gpu, gpu], "other_gpu_processes": [process]}
    built = RunRecord.build(record)
    assert built.hardware.gpus[0].power_limit_w == 700.0 and built.hardware.other_gpu_processes[0].pid == 42
    assert built.hardware.hardware_class() == "GPU NVIDIA H100 80GB HBM3 x2"
    assert built.as_json()["hardware"]["gpus"][0] == gpu  # the same keys as the meter wrote
    typo = {**record, "hardware": {**record["hardware"], "gpus": [{**gpu, "power_limt_w": 1.0}]}}
    with pytest.raises(ValidationError, match="power_limt_w"):
        RunRecord.build(typo)
    assert RunRecord.load(typo).hardware.gpus[0] == built.hardware.gpus[0]
