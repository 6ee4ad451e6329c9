"""Every bad number is one line on stderr and exit status 2; statuses and missing figures read the same everywhere.

Runs are stored in a real SQLite database (Store + ResultRow) and every command is the real CLI in a
subprocess.  A run whose owner has gone is made by a real child process that stores it and exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, assert_one_line_error, cli, cli_in_process

from joulescore.hardware import logical_cpus
from joulescore.store.sqlite import ResultRow, Store

ROOT = Path(__file__).resolve().parents[2]
CPUS = logical_cpus()  # what --threads is checked against, from the same boundary


def _spec(served: bool = False) -> dict[str, Any]:
    """A stored run's spec: a local GGUF model, or a served one that records no parameter count."""
    model = {"name": "SmolLM2-135M-Instruct", "path": None, "backend": "llama.cpp", "quantization": "Q4_1",
             "parameters": 134_515_008, "architecture": "llama", "context_length": 8192,
             "extra": {"size_bytes": 98_000_000}}
    if served:
        model = {"name": "served-model", "path": None, "backend": "openai", "quantization": None,
                 "parameters": None, "architecture": None, "context_length": None,
                 "extra": {"endpoint": "http://127.0.0.1:8000"}}
    return {
        "config": {"model": "smollm2-135m", "task": "chat", "protocol": "energy-score", "max_new_tokens": 10,
                   "batch_size": 1, "warmup": 0, "backend": "openai" if served else "llama.cpp"},
        "model": model,
        "task": {"name": "chat", "dataset": "chat.jsonl", "num_prompts": 4, "metric": "length"},
        "hardware": {"cpu": "Intel(R) Xeon(R) Processor (Emerald Rapids)", "cpu_microarchitecture": "Emerald Rapids",
                     "logical_cpus": 2, "ram_gb": 8.0, "gpus": []},
        "meter": {"kind": "estimated", "sources": ["estimator"], "includes": ["cpu", "dram"],
                  "uncertainty_pct": None if served else 30.0, "notes": [], "domains": ["cpu", "dram"]},
    }


def _row(i: int, decode_j: float = 6.0) -> ResultRow:
    total = 2.0 + decode_j
    return ResultRow(prompt_index=i, prompt_id=f"p{i}", ok=True, error=None, finish_reason="length",
                     input_tokens=40, output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=2.0,
                     decode_j=decode_j, low_j=0.7 * total, high_j=1.3 * total,
                     domains={"cpu": 0.8 * total, "dram": 0.2 * total}, text="x " * 10)


def make_run(db: Path, run_id: str = "run-a", *, served: bool = False, stored: int = 4, decode_j: float = 6.0,
             finish: bool = True) -> str:
    """A run of 4 prompts with ``stored`` answered; finished (status and record written) like a real run."""
    from joulescore.bench.session import finish as finish_run

    with Store(db) as store:
        store.create_run(run_id, 4, _spec(served))
        for i in range(stored):
            store.add_result(run_id, _row(i, decode_j))
        if finish:
            finish_run(store, run_id, None)
    return run_id


def make_orphan(db: Path, run_id: str, stored: int) -> None:
    """A run stored by a process that then died without finishing it (status left at 'running')."""
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]  # the tests package, and its conftest
        from pathlib import Path
        from tests.store.test_hardening_numbers import make_run
        make_run(Path({str(db)!r}), {run_id!r}, stored={stored}, finish=False)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def make_sweep(db: Path) -> str:
    run_id = make_run(db)
    with Store(db) as store:
        store.create_sweep("sweep-a", "t", {"base": {"task": "chat"}, "baseline": "a"})
        store.set_variant("sweep-a", 0, "a", {}, "complete", run_id)
    return "sweep-a"


def strict_json(text: str) -> Any:
    """JSON as the standard has it: NaN and Infinity are not JSON."""
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# --- 1. NaN, infinity and out-of-range figures -----------------------------------------------------

IMPACT_FLAGS = ("--pue", "--wue", "--queries-per-day", "--g-per-kwh", "--price-per-kwh", "--renewable-share",
                "--tdp-w", "--peak-tflops", "--mem-bw-gbs", "--active-params")


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize("flag", IMPACT_FLAGS)
def test_impact_refuses_non_finite(db: Path, cli_case: Cli, flag: str, value: str) -> None:
    make_run(db)
    assert_one_line_error(cli_case("impact", "run-a", flag, value, db=db), flag, "finite", value)


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--renewable-share", "1.5", "between 0 and 1"), ("--renewable-share", "-0.1", "between 0 and 1"),
    ("--pue", "0", "at least 1"), ("--pue", "0.5", "at least 1"),
    ("--queries-per-day", "0", "more than 0"), ("--queries-per-day", "-5", "more than 0"),
    ("--wue", "-1", "at least 0"), ("--price-per-kwh", "-0.1", "at least 0"), ("--tdp-w", "0", "more than 0"),
    ("--active-params", "-1", "more than 0"),
])
def test_impact_refuses_out_of_range(db: Path, cli_case: Cli, flag: str, value: str, says: str) -> None:
    make_run(db)
    assert_one_line_error(cli_case("impact", "run-a", flag, value, db=db), flag, says)


@pytest.mark.parametrize(("flag", "value"), [("--tdp-w", "nan"), ("--peak-tflops", "inf"), ("--mem-bw-gbs", "nan"),
                                             ("--active-params", "inf"), ("--active-params", "0")])
def test_project_refuses_bad_figures(db: Path, cli_case: Cli, flag: str, value: str) -> None:
    make_run(db)
    assert_one_line_error(cli_case("project", "run-a", "--to", "H100", flag, value, db=db), flag)


@pytest.mark.parametrize("value", ["nan s", "inf", "nan", "-1s", "-5ms", "1e400"])
def test_advise_refuses_bad_latency_limit(db: Path, cli_case: Cli, value: str) -> None:
    sweep = make_sweep(db)
    assert_one_line_error(cli_case("advise", sweep, "--max-p90-latency", value, db=db), "--max-p90-latency", "finite")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_advise_refuses_non_finite_quality_drop(db: Path, cli_case: Cli, value: str) -> None:
    sweep = make_sweep(db)
    assert_one_line_error(cli_case("advise", sweep, "--max-quality-drop", value, db=db), "--max-quality-drop", "finite")


def test_advise_takes_good_limits(db: Path) -> None:
    sweep = make_sweep(db)
    proc = cli("advise", sweep, "--max-p90-latency", "2s", "--max-quality-drop", "1", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    advice = strict_json(proc.stdout)
    assert advice["limits"] == {"max_quality_drop": 1.0, "max_p90_latency_s": 2.0}
    assert advice["recommended"]["variant"] == "a"


def test_json_is_strict_even_with_an_infinite_figure(db: Path) -> None:
    """A run whose stored energy is infinite: --json prints null there, never a bare Infinity or NaN."""
    make_run(db, decode_j=float("inf"))
    show = cli("show", "run-a", "--json", db=db)
    assert show.returncode == 0, show.stderr
    record = strict_json(show.stdout)
    assert record["energy"]["total_j"] is None and record["energy"]["prefill_j"] == 8.0
    impact = cli("impact", "run-a", "--json", "--compare-regions", "FR,DE", db=db)
    assert impact.returncode == 0, impact.stderr
    assert strict_json(impact.stdout)["per_query"]["carbon_g"] is None


def test_impact_json_is_strict(db: Path) -> None:
    make_run(db)
    proc = cli("impact", "run-a", "--json", "--pue", "1.2", db=db)
    assert proc.returncode == 0, proc.stderr
    assert strict_json(proc.stdout)["assumptions"]["pue"] == 1.2


@pytest.mark.slow
def test_run_json_is_strict(db: Path) -> None:
    proc = cli("run", "--limit", "2", "--warmup", "0", "--max-new-tokens", "3", "--no-progress", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    record = strict_json(proc.stdout)
    assert record["status"] == "complete"
    listed = strict_json(cli("runs", "--json", db=db).stdout)
    assert [r["status"] for r in listed] == ["complete"]


# --- 2. the user's figures carry their source ------------------------------------------------------

def test_impact_shows_the_user_pue_source(db: Path) -> None:
    make_run(db)
    proc = cli("impact", "run-a", "--pue", "1.2", "--wue", "0.5", db=db)
    assert proc.returncode == 0, proc.stderr
    assert "PUE 1.2 [user (--pue)]" in proc.stdout
    assert "WUE 0.5 L/kWh IT [user (--wue)]" in proc.stdout


# --- 3 and 4. threads, context window, idle baseline: refused before a run is stored -----------------

def _no_runs(db: Path) -> None:
    if db.exists():
        listed = cli_in_process("runs", "--json", db=db)
        assert listed.returncode == 0 and strict_json(listed.stdout) == [], listed.stdout


@pytest.mark.parametrize("threads", ["999", str(CPUS + 1)])
def test_threads_above_the_cpus_are_refused(db: Path, cli_case: Cli, threads: str) -> None:
    proc = cli_case("run", "--threads", threads, "--limit", "1", "--warmup", "0", "--no-progress", db=db)
    assert_one_line_error(proc, f"--threads {threads}", f"{CPUS} CPUs", f"at most --threads {CPUS}")
    _no_runs(db)


@pytest.mark.parametrize(("args", "says"), [
    (("--max-new-tokens", "5000"), "--max-new-tokens 5000 does not fit the context window of 4096 tokens"),
    (("--max-new-tokens", "4096"), "context window of 4096 tokens"),
    (("--n-ctx", "512", "--max-new-tokens", "600"), "context window of 512 tokens"),
    # SmolLM2 was trained for 8192 tokens: a larger --n-ctx does not make room beyond that
    (("--n-ctx", "16384", "--max-new-tokens", "10000"), "context window of 8192 tokens (the model's)"),
])
def test_max_new_tokens_beyond_the_context_is_refused(db: Path, cli_case: Cli, args: tuple[str, ...], says: str) -> None:
    proc = cli_case("run", *args, "--limit", "1", "--warmup", "0", "--no-progress", db=db)
    assert_one_line_error(proc, says)
    _no_runs(db)


@pytest.mark.parametrize(("value", "says"), [("-3", "at least 0"), ("nan", "finite"), ("inf", "finite")])
def test_idle_baseline_must_be_a_finite_duration(db: Path, cli_case: Cli, value: str, says: str) -> None:
    proc = cli_case("run", "--idle-baseline", value, "--limit", "1", "--warmup", "0", "--no-progress", db=db)
    assert_one_line_error(proc, "--idle-baseline", says)
    assert "OverflowError" not in proc.stderr
    _no_runs(db)


# --- 5. the same flags on compare-reasoning, and in a sweep plan -------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (("--limit", "0"), "--limit must be at least 1"), (("--warmup", "-1"), "--warmup must be at least 0"),
    (("--n-ctx", "0"), "--n-ctx must be at least 128"), (("--threads", "0"), "--threads must be at least 1"),
    (("--threads", "999"), f"at most --threads {CPUS}"),
])
def test_compare_reasoning_refuses_bad_numbers(db: Path, cli_case: Cli, args: tuple[str, ...], says: str) -> None:
    proc = cli_case("compare-reasoning", *args, "--no-progress", db=db)
    assert_one_line_error(proc, says)
    _no_runs(db)


def test_sweep_plan_batch_size_zero_names_key_and_line(db: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: t\ntask: chat\nlimit: 1\nwarmup: 0\nbatch_sizes: [0]\n"
                    "engines:\n  - {name: a, backend: llama.cpp}\n", encoding="utf-8")
    assert_one_line_error(cli("sweep", str(plan), db=db), "line 5", "batch_sizes", "got 0")


# --- 6. --active-params for a run that records no parameter count -----------------------------------

def test_project_needs_and_takes_active_params(db: Path) -> None:
    make_run(db, "served", served=True)
    missing = cli("project", "served", "--to", "H100", db=db)
    assert_one_line_error(missing, "does not record the model's parameter count", "--active-params")
    assert "--active-params" in cli("project", "--help").stdout
    proc = cli("project", "served", "--to", "H100", "--active-params", "1.35e8", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    p = strict_json(proc.stdout)
    assert p["workload"]["parameters"] == 1.35e8
    assert p["targets"][0]["available"] and p["targets"][0]["central_j_per_query"] > 0


def test_impact_floor_takes_active_params(db: Path) -> None:
    make_run(db, "served", served=True)
    chip = ("--tdp-w", "100", "--peak-tflops", "10", "--mem-bw-gbs", "100")
    without = strict_json(cli("impact", "served", *chip, "--json", db=db).stdout)["floor"]
    assert not without["available"] and "--active-params" in without["reason"]
    proc = cli("impact", "served", *chip, "--active-params", "1.35e8", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    floor = strict_json(proc.stdout)["floor"]
    assert floor["available"] and floor["workload"]["parameters"] == 1.35e8


# --- 7. one status vocabulary; n/a for missing figures ----------------------------------------------

def _statuses(db: Path, run_id: str) -> tuple[str, str, str]:
    listed = {r["run_id"]: r for r in strict_json(cli("runs", "--json", db=db).stdout)}
    shown = strict_json(cli("show", run_id, "--json", db=db).stdout)
    text = cli("runs", db=db).stdout
    line = next(ln for ln in text.splitlines() if run_id in ln)
    return listed[run_id]["status"], shown["status"], line


def test_a_run_whose_process_died_is_partial_in_runs_and_show(db: Path) -> None:
    make_orphan(db, "orphan", stored=2)
    with Store(db) as store:
        assert store.get_run("orphan").status == "running"  # as the dead process left it
    listed, shown, line = _statuses(db, "orphan")
    assert listed == shown == "partial"
    assert "partial" in line and "2/4" in line
    assert "(partial)" in cli("show", "orphan", db=db).stdout


def test_a_dead_run_with_every_prompt_stored_is_complete_in_both(db: Path) -> None:
    make_orphan(db, "orphan", stored=4)
    listed, shown, _ = _statuses(db, "orphan")
    assert listed == shown == "complete"


def test_a_run_whose_process_is_alive_is_running_in_both(db: Path) -> None:
    make_run(db, "live", stored=1, finish=False)  # owned by this (live) test process
    listed, shown, line = _statuses(db, "live")
    assert listed == shown == "running"
    assert "1/4" in line


def test_finished_runs_keep_their_status(db: Path) -> None:
    make_run(db, "done")
    make_run(db, "cut", stored=2)
    assert _statuses(db, "done")[:2] == ("complete", "complete")
    assert _statuses(db, "cut")[:2] == ("partial", "partial")


def test_missing_figures_print_as_na_never_none(db: Path) -> None:
    """A served model: no quantization, no parameter count, no stated meter uncertainty."""
    make_run(db, "served", served=True)
    for args in (("show", "served"), ("runs",), ("impact", "served"),
                 ("project", "served", "--to", "H100", "--active-params", "1e8")):
        proc = cli(*args, db=db)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "None" not in proc.stdout, (args, proc.stdout)
    shown = cli("show", "served", db=db).stdout
    assert "openai, n/a" in shown and "no stated uncertainty" in shown
