"""The run's spec: typed settings, strict when a run starts, tolerant of whatever an older joulescore stored."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from joulescore.model.config import DEFAULT_OTHERS_CPU_PCT, DEFAULT_STEAL_PCT, RunConfig
from joulescore.model.options import LlamaCppOptions, TransformersOptions
from joulescore.model.spec import RunSpec
from joulescore.store.sqlite import Store
from tests.model.test_record import SPEC

FIXTURE = Path(__file__).parents[1] / "fixtures" / "joulescore-0.1.0.db"


def test_a_new_run_stores_every_setting_as_the_settings_dump() -> None:
    config = RunConfig(task="chat", batch_size=4, precision="2%", limit=200, seed=7)
    spec = RunSpec.build({**SPEC, "config": config, "population": {"why_plain": "no tokenizer"},
                          "probe": {"workload": "w", "meter_kind": "estimated", "cpu_s": [1.0], "wall_s": [1.0],
                                    "energy_j": [2.0]}})
    stored = spec.stored()
    assert stored["config"] == json.loads(json.dumps(config.model_dump()))  # the same keys and values as before
    assert stored["population"] == {"why_plain": "no tokenizer"}  # only the keys given
    loaded = RunSpec.load(json.loads(json.dumps(stored)))
    assert loaded.config == config and loaded.config.batch_size == 4 and loaded.config.precision == 2.0
    assert loaded.population is not None and loaded.population.why_plain == "no tokenizer"
    assert loaded.probe is not None and loaded.probe.cpu_s == [1.0]
    assert loaded.stored() == stored


def test_building_a_spec_stays_strict() -> None:
    with pytest.raises(ValidationError, match="retired_option"):
        RunSpec.build({**SPEC, "config": {**SPEC["config"], "retired_option": 1}})
    with pytest.raises(ValidationError, match="batch_size"):
        RunSpec.build({**SPEC, "config": {**SPEC["config"], "batch_size": 0}})
    with pytest.raises(ValidationError, match="cpu_seconds"):
        RunSpec.build({**SPEC, "probe": {"workload": "w", "cpu_seconds": [1.0]}})


def test_stored_settings_that_no_longer_validate_fall_back_to_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOULESCORE_DISTURBED_CPU_PCT", "not a number")  # this machine's setting: never read here
    stored = {**SPEC["config"], "retired_option": True, "backend": "llamacpp-renamed", "batch_size": 0,
              "gpu_layers": "all", "seed": 11, "split_phases": True, "precision": 5.0, "limit": 300}
    spec = RunSpec.load({**SPEC, "config": stored})
    config = spec.config
    assert config.backend == "llama.cpp" and config.batch_size == 1  # the defaults, for those that fail
    assert isinstance(config.engine, LlamaCppOptions) and config.engine == LlamaCppOptions()
    assert (config.seed, config.split_phases, config.precision, config.limit) == (11, True, 5.0, 300)  # the rest kept
    assert (config.disturbed_cpu_pct, config.disturbed_steal_pct) == (DEFAULT_OTHERS_CPU_PCT, DEFAULT_STEAL_PCT)
    assert spec.config_as_stored() == stored  # shown as it was stored


def test_settings_that_fail_a_check_across_them_keep_the_ones_that_do_not() -> None:
    stored = {"task": "chat", "reasoning": "on", "protocol": "energy-score", "batch_size": 4,
              "backend": "transformers", "dtype": "bf16", "prompt_cache": False, "max_new_tokens": 64}
    config = RunSpec.load({**SPEC, "config": stored}).config
    assert config.reasoning == "on" and config.protocol == "natural" and config.batch_size == 4
    assert config.backend == "transformers" and config.max_new_tokens == 64
    assert isinstance(config.engine, TransformersOptions) and config.engine.dtype is None  # the engine's options go first


def test_the_0_1_0_specs_load_typed_and_their_records_keep_their_config(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    with sqlite3.connect(FIXTURE) as conn:
        old = {run_id: (json.loads(spec), json.loads(record))
               for run_id, spec, record in conn.execute("SELECT run_id, spec_json, record_json FROM runs")}
    with Store(db) as store:
        records = {r.run_id: r for r in store.records()}
    for run_id, (spec, record) in old.items():
        loaded = RunSpec.load(spec)
        assert loaded.config.limit == spec["config"]["limit"] and loaded.config.max_new_tokens == 10
        assert isinstance(loaded.config.engine, LlamaCppOptions) and loaded.config.engine.prompt_cache is True
        assert records[run_id].config == record["config"]  # the record's config section is as 0.1.0 wrote it
