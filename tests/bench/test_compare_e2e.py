"""``joulescore compare`` on real runs of the default model, in a real SQLite database.

Runs are tiny (6 prompts, one engine thread) and shared by the module.  The machine is shared too, and
its estimator follows CPU time, so a re-run drifts by a few percent: the re-run and the heavier run are
judged at one threshold (25%), under which the re-run must say "no change" and the heavier run
(30 new tokens against 3, under the energy-score protocol) must say "regression".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_one_line_error, cli

from joulescore.store.sqlite import Store

FAST = ("--limit", "6", "--warmup", "1", "--threads", "1", "--no-progress", "--json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A, A re-run, a heavier B, and a run on another task: their ids, run.json paths and the database."""
    folder = tmp_path_factory.mktemp("compare")
    db = folder / "results.db"
    out: dict[str, Any] = {"db": db, "folder": folder}
    for name, extra in (("a", ("--max-new-tokens", "3")), ("again", ("--max-new-tokens", "3")),
                        ("heavier", ("--max-new-tokens", "30")),
                        ("sentiment", ("--task", "sentiment", "--max-new-tokens", "3", "--limit", "2"))):
        proc = cli("run", *FAST, *extra, db=db)
        assert proc.returncode == 0, proc.stderr
        record = json.loads(proc.stdout)
        out[name] = record["run_id"]
        out[name + "_json"] = Path(record["run_json"])
    return out


def _compare(runs: dict[str, Any], a: str, b: str, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = cli("compare", a, b, "--json", *extra, db=runs["db"])
    assert proc.returncode in (0, 1, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_a_run_against_its_re_run_is_no_change(runs: dict[str, Any]) -> None:
    code, result = _compare(runs, runs["a"], runs["again"], "--threshold", "25%")
    assert result["paired"] is True
    assert result["verdict"] == "no change", result["figures"]["j_per_query"]
    assert code == 0
    assert result["drift"]["ratio"] is not None  # both runs timed the machine speed probe


def test_a_heavier_run_is_a_regression_with_exit_1(runs: dict[str, Any]) -> None:
    code, result = _compare(runs, runs["a"], runs["heavier"], "--threshold", "25%")
    assert result["verdict"] == "regression", result["figures"]["j_per_query"]
    assert code == 1
    assert result["figures"]["j_per_query"]["ratio_low"] > 1.25
    assert result["quality"]["b"] > result["quality"]["a"]  # chat's quality is output length: 30 tokens vs 3


def test_a_committed_run_json_compares_prompt_by_prompt(runs: dict[str, Any], tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    shutil.copy(runs["a_json"], baseline)
    proc = cli("compare", str(baseline), runs["a"], db=runs["db"])
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("no change: B/A J/query 1.000 (95% interval 1.000-1.000"), last
    assert "paired on the same 6 prompts" in proc.stdout


def test_a_run_on_another_task_is_refused_in_one_line(runs: dict[str, Any]) -> None:
    proc = cli("compare", runs["a"], runs["sentiment"], db=runs["db"])
    assert_one_line_error(proc, "not comparable: different task: chat", "sentiment", "--allow-different task")
    allowed = cli("compare", runs["a"], runs["sentiment"], "--allow-different", "task", "--inconclusive-ok",
                  db=runs["db"])
    assert allowed.returncode in (0, 1), allowed.stderr
    assert "unpaired" in allowed.stdout and "allowed by --allow-different: different task" in allowed.stdout


def test_a_partial_or_disturbed_run_is_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    data = json.loads(runs["again_json"].read_text())
    data["status"] = "partial"
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(data))
    assert_one_line_error(cli("compare", runs["a"], str(partial), db=runs["db"]), "is partial, not complete")
    data["status"] = "complete"
    data["interference"]["disturbed"], data["interference"]["reason"] = True, "other processes used 60%"
    disturbed = tmp_path / "disturbed.json"
    disturbed.write_text(json.dumps(data))
    assert_one_line_error(cli("compare", str(disturbed), runs["a"], db=runs["db"]), "DISTURBED")


def test_a_group_of_repeats_compares_against_a_run(runs: dict[str, Any]) -> None:
    code, result = _compare(runs, f"{runs['a']},{runs['again']}", runs["heavier"], "--threshold", "25%")
    assert result["a"]["runs"] == [runs["a"], runs["again"]]
    assert result["verdict"] == "regression" and code == 1


def test_bad_input_is_one_line(runs: dict[str, Any], tmp_path: Path) -> None:
    assert_one_line_error(cli("compare", runs["a"], "no-such-run", db=runs["db"]), "no run 'no-such-run'")
    assert_one_line_error(cli("compare", runs["a"], runs["a"], "--threshold", "x", db=runs["db"]), "--threshold")
    old = tmp_path / "old.json"
    data = json.loads(runs["a_json"].read_text())
    data.pop("per_prompt")
    old.write_text(json.dumps(data))
    assert_one_line_error(cli("compare", str(old), runs["a"], db=runs["db"]), "no per-prompt figures")


def test_check_judges_the_upper_bound_of_the_interval_or_the_point(runs: dict[str, Any]) -> None:
    record = json.loads(runs["a_json"].read_text())
    point, high = record["j_per_query"], record["interval"]["j_per_query_high"]
    assert point < high
    between = f"{(point + high) / 2:.6f}"
    over = cli("check", runs["a"], "--max-j-per-query", between, db=runs["db"])
    assert over.returncode == 1, over.stderr
    assert "OVER" in over.stdout and over.stdout.strip().endswith("over budget: J/query")
    assert cli("check", runs["a"], "--max-j-per-query", between, "--point", db=runs["db"]).returncode == 0
    wh = f"{record['interval']['wh_per_1000_queries_high'] * 1.01:.6f}"
    within = cli("check", str(runs["a_json"]), "--max-wh-per-1000", wh, "--max-j-per-token", "1000", "--json")
    assert within.returncode == 0, within.stderr
    assert json.loads(within.stdout)["within"] is True
    assert_one_line_error(cli("check", runs["a"], db=runs["db"]), "give a budget")


def test_run_with_a_baseline_rates_then_compares_in_one_command(runs: dict[str, Any]) -> None:
    proc = cli("run", *FAST, "--max-new-tokens", "30", "--baseline", str(runs["a_json"]),
               "--baseline-threshold", "25%", db=runs["db"])
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["comparison"]["verdict"] == "regression"
    assert out["comparison"]["b"]["runs"] == [out["runs"][0]["run_id"]]
    bad = cli("run", *FAST, "--baseline", "no-such-run", db=runs["db"])
    assert_one_line_error(bad, "no run 'no-such-run'")


def test_interleave_reruns_both_settings_in_alternating_blocks(runs: dict[str, Any]) -> None:
    import sqlite3

    code, result = _compare(runs, runs["a"], str(runs["heavier_json"]), "--interleave", "--blocks", "2",
                            "--threshold", "25%")
    assert result["verdict"] == "regression" and code == 1
    new_a, new_b = result["interleaved"]["runs"]
    assert result["a"]["runs"] == [new_a] and result["b"]["runs"] == [new_b]
    with sqlite3.connect(runs["db"]) as conn:
        specs = {r[0]: json.loads(r[1]) for r in conn.execute(
            "SELECT run_id, spec_json FROM runs WHERE run_id IN (?, ?)", (new_a, new_b))}
    assert specs[new_a]["interleave"] == {"with": new_b, "blocks": 2}
    assert specs[new_b]["config"]["max_new_tokens"] == 30
    assert len(specs[new_a]["probe"]["cpu_s"]) == 2  # timed before and after
    with Store(runs["db"]) as store:  # the record says how the run was made, and beside which
        link = store.record(new_b).interleave
    assert link is not None and (link.partner, link.blocks) == (new_a, 2)


@pytest.mark.parametrize(("key", "change", "named"), [
    ("protocol", {"config": {"protocol": "natural"}}, "different protocol: energy-score"),
    ("hardware", {"hardware": {"cpu_microarchitecture": "Zen 4"}}, "different hardware: CPU "),
    ("meter", {"meter": {"kind": "measured"}}, "different meter: estimated"),
])
def test_other_protocol_hardware_or_meter_is_refused_unless_allowed(
        runs: dict[str, Any], tmp_path: Path, key: str, change: dict[str, Any], named: str) -> None:
    data = json.loads(runs["again_json"].read_text())
    for section, values in change.items():
        data[section].update(values)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    assert_one_line_error(cli("compare", str(runs["a_json"]), str(other)), named, f"--allow-different {key}")
    allowed = cli("compare", str(runs["a_json"]), str(other), "--allow-different", key, "--threshold", "25%")
    assert allowed.returncode == 0, allowed.stderr
    assert f"allowed by --allow-different: different {key}" in allowed.stdout
