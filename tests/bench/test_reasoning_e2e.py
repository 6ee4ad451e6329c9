"""compare-reasoning end to end on the real SmolLM2 (prompted reasoning), and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, assert_one_line_error, cli, cli_in_process


@pytest.mark.slow
def test_compare_reasoning_on_smollm2(db: Path, tmp_path: Path) -> None:
    proc = cli("compare-reasoning", "smollm2-135m", "--task", "reasoning", "--modes", "off,on", "--limit", "3",
               "--budgets", "off=12,on=24", "--warmup", "0", "--threads", "1", "--json", "--no-progress",
               "--out", str(tmp_path / "runs"), db=db)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    off, on = result["modes"]
    assert (off["mode"], on["mode"], result["baseline"]) == ("off", "on", "off")
    assert (off["method"], on["method"], on["family"]) == ("prompted", "prompted", "none")
    assert (off["budget"], on["budget"]) == (12, 24)
    assert on["energy_ratio"] == pytest.approx(on["j_per_query"] / off["j_per_query"])
    assert on["tokens_ratio"] == pytest.approx(on["output_tokens_per_query"] / off["output_tokens_per_query"])
    assert result["verdict"].startswith(f"on: {on['energy_ratio']:.3g}x the energy for ")
    assert on["accuracy_change_points"] == pytest.approx(100 * (on["accuracy"] - off["accuracy"]))

    for row, mode in ((off, "off"), (on, "on")):  # each mode is a normal stored run (read in process: no model)
        record = json.loads(cli_in_process("show", row["run_id"], "--json", db=db).stdout)
        assert record["config"]["protocol"] == "natural"
        assert record["config"]["reasoning"]["mode"] == mode
        assert record["config"]["reasoning"]["budget"] == row["budget"]
        counts, energy = record["counts"], record["energy"]
        assert counts["reasoning_tokens"] + counts["answer_tokens"] == counts["output_tokens"]
        assert energy["reasoning_j"] + energy["answer_j"] == pytest.approx(energy["decode_j"], rel=1e-6)
        assert set(counts["reasoning_tokens_per_query"]) == {"p50", "p90", "p99", "max"}
    again = cli("compare-reasoning", "--runs", f"{off['run_id']},{on['run_id']}", "--json", db=db)
    assert json.loads(again.stdout)["verdict"] == result["verdict"]  # stored runs, compared again
    off_record = json.loads(cli_in_process("show", off["run_id"], "--json", db=db).stdout)
    assert off_record["counts"]["reasoning_tokens"] == 0  # no switch, no instruction: all answer


@pytest.mark.parametrize(("args", "fragment"), [
    (["run", "--reasoning", "maybe"], "unknown reasoning mode 'maybe'"),
    (["run", "--reasoning", "on", "--protocol", "energy-score"], "--reasoning needs --protocol natural"),
    (["run", "--reasoning", "on", "--reasoning-family", "llama"], "unknown reasoning family 'llama'"),
    (["compare-reasoning", "smollm2-135m", "--modes", "off,deep"], "unknown reasoning mode 'deep'"),
    (["compare-reasoning", "smollm2-135m", "--budgets", "on=0"], "needs at least 1 token"),
    (["compare-reasoning", "smollm2-135m", "--budgets", "high=9"], "--budgets takes MODE=TOKENS"),
])
def test_bad_reasoning_input_is_one_line(db: Path, cli_case: Cli, args: list[str], fragment: str) -> None:
    assert_one_line_error(cli_case(*args, db=db), fragment)
