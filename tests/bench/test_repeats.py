"""Repeat variance: the arithmetic, and `run --repeats` storing each repeat as a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli

from joulescore.bench.repeats import repeat_variance, spread
from tests.records import make_record


def test_spread_on_known_values() -> None:
    s = spread([2.0, 4.0, 6.0])
    assert s["mean"] == 4.0 and s["stdev"] == 2.0 and s["cv_pct"] == 50.0
    assert (s["min"], s["max"], s["n"]) == (2.0, 6.0, 3)
    single = spread([5.0])
    assert single["stdev"] is None and single["cv_pct"] is None


def test_repeat_variance_reads_each_headline_figure() -> None:
    records = [make_record(run_id=f"r{i}", meter={"kind": "estimated"}, j_per_query=v,
                           j_per_output_token=v / 10, wh_per_1000_queries=v / 3.6, tokens_per_s=20.0)
               for i, v in enumerate((1.0, 3.0))]
    v = repeat_variance(records)
    assert v["run_ids"] == ["r0", "r1"] and v["meter_kind"] == ["estimated"]
    assert v["j_per_query"]["mean"] == 2.0
    assert v["tokens_per_s"]["stdev"] == 0.0
    assert v["j_per_output_token"]["cv_pct"] == pytest.approx(70.711, rel=1e-4)


def test_run_repeats_stores_every_repeat(db: Path) -> None:
    proc = cli("run", "--limit", "1", "--warmup", "0", "--repeats", "2", "--json", "--no-progress", db=db)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["runs"]) == 2 and len({r["run_id"] for r in out["runs"]}) == 2
    assert out["repeat_variance"]["j_per_query"]["n"] == 2
    listed = json.loads(cli("runs", "--json", db=db).stdout)
    assert {r["run_id"] for r in listed} == set(out["repeat_variance"]["run_ids"])


def test_repeats_must_be_positive(db: Path) -> None:
    assert_one_line_error(cli("run", "--repeats", "0", db=db), "--repeats must be at least 1")
