"""What the CLI prints is text: identifiers are never cut in pipes, outside strings are never markup."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import assert_one_line_error, cli, cli_in_process

from joulescore.store.sqlite import ResultRow, Store

MARKUP = "evil[bold]model[/x] [link=file:///etc]x[/link]"


def _store_run(db: Path, run_id: str, model: str = "SmolLM2-135M-Instruct", task: str = "chat") -> None:
    spec = {
        "config": {"model": model, "task": task, "protocol": "energy-score", "max_new_tokens": 10, "batch_size": 1},
        "model": {"name": model, "path": f"/models/{model}.gguf", "backend": "llama.cpp", "quantization": "Q4_1",
                  "parameters": 1000},
        "task": {"name": task, "dataset": "chat.jsonl", "num_prompts": 1, "metric": "length"},
        "hardware": {"cpu": "Xeon", "logical_cpus": 2, "ram_gb": 8.0},
        "meter": {"kind": "estimated", "sources": ["estimator"], "includes": ["cpu"], "uncertainty_pct": 30.0,
                  "notes": [f"note about {model}"], "domains": ["cpu"]},
        "reasoning": None,
    }
    with Store(db) as store:
        store.create_run(run_id, 1, spec)
        store.add_result(run_id, ResultRow(
            prompt_index=0, prompt_id="p0", ok=True, error=None, finish_reason="length", input_tokens=20,
            output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=1.0, decode_j=3.0, low_j=3.0, high_j=6.0,
            domains={"cpu": 4.0}, text="hello"))
        store.set_status(run_id, "complete", store.record(run_id))


def test_piped_runs_keep_whole_run_ids_in_a_narrow_terminal(db: Path) -> None:
    ids = [f"20260101-00000{i}-abcdef-with-a-long-tail" for i in range(3)]
    for i, run_id in enumerate(ids):
        _store_run(db, run_id, model=f"a-rather-long-model-name-{i}-instruct-q4_k_m")
    proc = cli("runs", db=db, env={"COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    for i, run_id in enumerate(ids):
        assert run_id in proc.stdout
        assert f"a-rather-long-model-name-{i}-instruct-q4_k_m" in proc.stdout


def test_markup_in_a_model_name_prints_verbatim_everywhere(db: Path, tmp_path: Path) -> None:
    _store_run(db, "r-markup", model=MARKUP)
    for args in (("runs",), ("show", "r-markup"), ("board",), ("impact", "r-markup")):
        proc = cli(*args, db=db)
        assert proc.returncode == 0, (args, proc.stderr)
        assert MARKUP in proc.stdout, (args, proc.stdout)
    label = tmp_path / "l[bold]x.svg"
    proc = cli("label", "r-markup", "-o", str(label), db=db)
    assert proc.returncode == 0 and label.exists() and str(label) in proc.stdout


def test_list_commands_take_json(db: Path) -> None:
    _store_run(db, "r-json")
    for args in (("runs",), ("tasks",), ("board",), ("meters",), ("sweeps",)):
        proc = cli(*args, "--json", db=db if args[0] in ("runs", "board", "sweeps") else None)
        assert proc.returncode == 0, (args, proc.stderr)
        json.loads(proc.stdout)
    assert json.loads(cli("runs", "--json", db=db).stdout)[0]["run_id"] == "r-json"


def test_install_hints_keep_their_brackets(tmp_path: Path) -> None:
    """A machine without the NVML binding is told `pip install 'joulescore[nvidia]'`, brackets and all."""
    (tmp_path / "pynvml.py").write_text("raise ImportError('no NVML binding here')\n", encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    proc = cli("meters", env={"PYTHONPATH": f"{tmp_path}:{root}"})
    assert proc.returncode == 0
    assert "pip install 'joulescore[nvidia]'" in proc.stdout


def test_usage_errors_are_one_line(db: Path) -> None:
    assert_one_line_error(cli("run", "--limit", "abc", db=db), "--limit")
    assert_one_line_error(cli("no-such-command"), "no-such-command")
    assert_one_line_error(cli("show", db=db), "run_id")


def test_a_bad_sweep_plan_key_names_the_key_and_its_line(db: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\ntask: chat\nlimt: 3\nengines:\n  - {backend: llama.cpp}\n", encoding="utf-8")
    assert_one_line_error(cli("sweep", str(plan), db=db), "line 3", "limt")
    plan.write_text("name: p\nlimit: 3\nengines:\n  - {backend: llama.cpp}\n  - {backend: llama.cpp, dtype: bf16}\n",
                    encoding="utf-8")
    assert_one_line_error(cli_in_process("sweep", str(plan), db=db), "line 5", "engines.1.dtype",
                          "does not take dtype")
    plan.write_text("name: p\nbatch_sizes: [1, 0]\nengines:\n  - {backend: llama.cpp}\n", encoding="utf-8")
    assert_one_line_error(cli_in_process("sweep", str(plan), db=db), "line 2", "batch_sizes.1")


def test_a_sweep_says_its_id_before_any_variant_runs_and_sweeps_lists_it(db: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: unreachable\nlimit: 1\nwarmup: 0\nengines:\n"
                    "  - {name: nowhere, backend: openai, endpoint: 'http://127.0.0.1:9'}\n", encoding="utf-8")
    proc = cli("sweep", str(plan), db=db)
    first = proc.stderr.splitlines()[0]
    assert first.startswith("sweep sweep-") and "continue with: joulescore sweep --resume sweep-" in first
    sweep_id = first.split()[1].rstrip(":")
    listed = json.loads(cli("sweeps", "--json", db=db).stdout)
    assert [(s["sweep_id"], s["name"], s["failed"]) for s in listed] == [(sweep_id, "unreachable", 1)]
