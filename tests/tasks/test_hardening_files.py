"""Files that are not what they claim (wrong encoding, too deep, empty, not rows, a folder) and unsafe
custom templates: each is one line on stderr and exit status 2, before any model loads or run is stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Cli, assert_one_line_error, cli, cli_in_process

from joulescore.tasks.spec import load_spec, task_names
from tests.impact.test_impact import make_run

#: a model path that does not exist: a check that comes first answers before this is ever looked at
NO_MODEL = "/nonexistent/model.gguf"


def _runs(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT run_id, status FROM runs").fetchall()


def _run_custom(db: Path, dataset: Path, template: str = "Say: {text}", run: Cli = cli) -> object:
    return run("run", "--model", NO_MODEL, "--dataset", str(dataset), "--template", template,
               "--limit", "1", "--warmup", "0", "--max-new-tokens", "1", "--no-progress", db=db)


ROWS = '{"id": "a", "text": "caf\u00e9 ok"}\n{"id": "b", "text": "second"}\n'


# --- encodings -----------------------------------------------------------------------------------

def test_dataset_in_utf16_with_bom_says_utf16(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "rows16.jsonl"
    f.write_bytes(ROWS.encode("utf-16"))  # writes its byte-order mark
    assert_one_line_error(_run_custom(db, f), "rows16.jsonl", "UTF-16", "not UTF-8")
    assert _runs(db) == []


def test_dataset_in_latin1_says_not_utf8(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "latin.jsonl"
    f.write_bytes(ROWS.encode("latin-1"))
    assert_one_line_error(_run_custom(db, f), "latin.jsonl", "not UTF-8", "0xe9", "line 1")
    assert _runs(db) == []


def test_dataset_in_utf16_without_bom_is_refused(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "rows16le.jsonl"
    f.write_bytes('{"id": "a", "text": "x"}\n'.encode("utf-16-le"))  # valid UTF-8 bytes, but full of NULs
    assert_one_line_error(_run_custom(db, f), "rows16le.jsonl", "NUL")


def test_dataset_with_utf8_bom_is_read(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "bom.jsonl"
    f.write_bytes(ROWS.encode("utf-8-sig"))
    # the dataset passes: the next check, the (missing) model, is what stops the run
    assert_one_line_error(_run_custom(db, f), "model file not found")
    assert _runs(db) == []


def test_sweep_plan_encodings(db: Path, tmp_path: Path) -> None:
    plan = "task: chat\nbase: {model: smollm2-135m}\nengines: []\n"
    utf16, latin = tmp_path / "p16.yaml", tmp_path / "plat.yaml"
    utf16.write_bytes(plan.encode("utf-16"))
    latin.write_bytes(("# caf\u00e9\n" + plan).encode("latin-1"))
    assert_one_line_error(cli("sweep", str(utf16), db=db), "sweep plan", "p16.yaml", "UTF-16")
    assert_one_line_error(cli_in_process("sweep", str(latin), db=db), "sweep plan", "plat.yaml", "not UTF-8")
    bom = tmp_path / "pbom.yaml"
    bom.write_bytes(("# caf\u00e9\n" + plan).encode("utf-8-sig"))
    # read fine: the error is the plan's own (no engines), on its real line
    assert_one_line_error(cli_in_process("sweep", str(bom), db=db), "pbom.yaml", "line 4", "engines")
    assert _runs(db) == []


GRID = "iso3,name,year,g_per_kwh,renewable_share_pct,source\nXAA,Atl\u00e1ntida,2024,5,100,me\n"


def test_grid_file_encodings(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    make_run(db)
    utf16, latin, bom = tmp_path / "g16.csv", tmp_path / "glat.csv", tmp_path / "gbom.csv"
    utf16.write_bytes(GRID.encode("utf-16"))
    latin.write_bytes(GRID.encode("latin-1"))
    bom.write_bytes(GRID.encode("utf-8-sig"))
    assert_one_line_error(cli("impact", "run-a", "--grid-file", str(utf16), db=db), "grid file", "g16.csv", "UTF-16")
    assert_one_line_error(cli_in_process("impact", "run-a", "--grid-file", str(latin), db=db), "grid file", "glat.csv",
                          "not UTF-8", "line 2")
    ok = cli_in_process("impact", "run-a", "--grid-file", str(bom), "--region", "XAA", "--json", db=db)
    assert ok.returncode == 0, ok.stderr
    assumptions = json.loads(ok.stdout)["assumptions"]
    assert (assumptions["region_name"], assumptions["g_per_kwh"]) == ("Atl\u00e1ntida", 5.0)
    assert_one_line_error(cli_in_process("impact", "run-a", "--grid-file", str(tmp_path), db=db), "grid file",
                          "directory")


ACCEL = ("name,tdp_w,memory_bw_gbs,peak_dense_bf16_tflops,source\n"
         "Acc\u00e9l\u00e9rateur X1,300,2000,500,me\n")


def test_hardware_file_encodings(tmp_path: Path) -> None:
    utf16, latin, bom = tmp_path / "h16.csv", tmp_path / "hlat.csv", tmp_path / "hbom.csv"
    utf16.write_bytes(ACCEL.encode("utf-16"))
    latin.write_bytes(ACCEL.encode("latin-1"))
    bom.write_bytes(ACCEL.encode("utf-8-sig"))
    assert_one_line_error(cli("project", "--list", "--hardware-file", str(utf16)), "accelerator file", "h16.csv",
                          "UTF-16")
    assert_one_line_error(cli_in_process("project", "--list", "--hardware-file", str(latin)), "accelerator file",
                          "hlat.csv",
                          "not UTF-8")
    ok = cli_in_process("project", "--list", "--json", "--hardware-file", str(bom))
    assert ok.returncode == 0, ok.stderr
    assert [c["name"] for c in json.loads(ok.stdout)] == ["Acc\u00e9l\u00e9rateur X1"]
    assert_one_line_error(cli_in_process("project", "--list", "--hardware-file", str(tmp_path)), "accelerator file",
                          "directory")


def test_csv_files_that_are_not_csv(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csv"
    huge.write_text('name,tdp_w,memory_bw_gbs,peak_dense_bf16_tflops\n"' + "x" * 200_000 + '",1,2,3\n')
    assert_one_line_error(cli("project", "--list", "--hardware-file", str(huge)), "huge.csv", "not valid CSV")
    words = tmp_path / "words.csv"
    words.write_text("name,tdp_w,memory_bw_gbs,peak_dense_bf16_tflops\nX1,lots,2,3\n")
    assert_one_line_error(cli_in_process("project", "--list", "--hardware-file", str(words)), "words.csv", "line 2",
                          "tdp_w",
                          "not a number")
    nameless = tmp_path / "nameless.csv"
    nameless.write_text("name,tdp_w,memory_bw_gbs,peak_dense_bf16_tflops\n,1,2,3\n")
    assert_one_line_error(cli_in_process("project", "--list", "--hardware-file", str(nameless)), "nameless.csv",
                          "line 2",
                          "name")


# --- nesting -------------------------------------------------------------------------------------

def test_dataset_row_nested_100000_deep(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "deep.jsonl"
    f.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert_one_line_error(_run_custom(db, f), f"{f}:2:", "deep")
    assert _runs(db) == []


def test_dataset_row_nested_just_under_the_recursion_limit(db: Path, tmp_path: Path) -> None:
    """Deep enough to load in a bare interpreter, yet no prompt: refused by its line, whatever the stack."""
    f = tmp_path / "deep990.jsonl"
    f.write_text('{"id": "b", "text": ' + "[" * 990 + "]" * 990 + "}\n")
    assert_one_line_error(_run_custom(db, f), f"{f}:1:", "deep")


def test_sweep_plan_nested_100000_deep(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("task: chat\nbase: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_one_line_error(cli("sweep", str(f), db=db), "sweep plan", "deep.yaml", "deep")
    g = tmp_path / "deepblock.yaml"
    g.write_text("task: chat\nbase:\n" + "".join(" " * i + "- \n" for i in range(3000)))
    assert_one_line_error(cli("sweep", str(g), db=db), "sweep plan", "deepblock.yaml")
    assert _runs(db) == []


def test_sweep_plan_alias_bomb(db: Path, tmp_path: Path) -> None:
    """Nine levels of nine aliases: a 1 kB file that is 387 million values once walked."""
    lines = ["task: chat", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\nengines: [{backend: llama.cpp}]\n")
    proc = cli("sweep", str(f), db=db, timeout=60)
    assert_one_line_error(proc, "sweep plan", "bomb.yaml", "more than 1,000,000 values")


# --- templates -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "fragments"), [
    ("Say {text:d}", ("{text:d}", "format spec")),
    ("Say {text!x}", ("{text!x}", "conversion")),
    ("Say {text!r}", ("{text!r}", "conversion")),
    ("Say {text:>999999999}", ("{text:>999999999}", "format spec")),
    ("Say {text:{id}}", ("format spec",)),
    ("Say {text.upper}", ("{text.upper}", "plain field name")),
    ("Say {text[0]}", ("{text[0]}", "plain field name")),
    ("Say {0}", ("{0}", "plain field name")),
    ("Say {}", ("{}", "no name")),
    ("Say {text", ("template is not valid",)),
    ("Say text}", ("template is not valid",)),
])
def test_unsafe_templates_are_refused_before_the_model(db: Path, tmp_path: Path, cli_case: Cli, template: str,
                                                       fragments: tuple[str, ...]) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text(ROWS, encoding="utf-8")
    assert_one_line_error(_run_custom(db, f, template, cli_case), *fragments)
    assert _runs(db) == []


def test_brace_escapes_stay_allowed(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text(ROWS, encoding="utf-8")
    # the template passes; the missing model stops the run next
    assert_one_line_error(_run_custom(db, f, "JSON {{like}} this: {text}"), "model file not found")


def test_shipped_specs_use_only_plain_fields() -> None:
    for name in task_names():
        spec = load_spec(name)
        assert spec.template_fields(), name
        if spec.encoder is not None:
            assert spec.template_fields(for_encoder=True), name


# --- not rows ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "fragments"), [
    ("", ("empty.jsonl", "no rows")),
    ("\n  \n\n", ("empty.jsonl", "no rows")),
    ("[1, 2]\n", ("empty.jsonl:1:", "JSON object", "got an array")),
    ('{"id": "a", "text": "x"}\n"x"\n', ("empty.jsonl:2:", "JSON object", "got a string")),
    ("null\n", ("empty.jsonl:1:", "JSON object", "got null")),
])
def test_datasets_without_rows(db: Path, tmp_path: Path, cli_case: Cli, content: str,
                               fragments: tuple[str, ...]) -> None:
    f = tmp_path / "empty.jsonl"
    f.write_text(content, encoding="utf-8")
    assert_one_line_error(_run_custom(db, f, run=cli_case), *fragments)
    assert _runs(db) == []


def test_dataset_that_is_a_directory(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "set.jsonl"
    folder.mkdir()
    assert_one_line_error(_run_custom(db, folder), "set.jsonl", "directory")
    assert_one_line_error(cli_in_process("run", "--model", NO_MODEL, "--task", "chat", "--dataset", str(folder),
                                         db=db),
                          "set.jsonl", "directory")
    assert _runs(db) == []


def test_missing_dataset(db: Path, tmp_path: Path) -> None:
    assert_one_line_error(_run_custom(db, tmp_path / "nope.jsonl"), "dataset not found", "nope.jsonl")


# --- other user files ----------------------------------------------------------------------------

def _encoder_copy(tmp_path: Path, sbert: bytes) -> Path:
    """The shipped MiniLM folder (files linked, not copied) with our own sentence_bert_config.json."""
    from joulescore.backends.models import resolve_encoder

    source = resolve_encoder("minilm-l6").path
    folder = tmp_path / "minilm"
    folder.mkdir()
    for item in source.iterdir():
        if item.name != "sentence_bert_config.json":
            (folder / item.name).symlink_to(item)
    (folder / "sentence_bert_config.json").write_bytes(sbert)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("sbert", "fragments"), [
    ('{"max_seq_length": 256}'.encode("utf-16"), ("sentence_bert_config.json", "UTF-16")),
    (b'{"max_seq_length": 256, "note": "caf\xe9"}', ("sentence_bert_config.json", "not UTF-8")),
    (b'{"max_seq_length": ', ("sentence_bert_config.json", "not valid JSON")),
    (b'{"max_seq_length": "long"}', ("max_seq_length", "not a positive whole number")),
], ids=["utf16", "latin1", "truncated", "not-a-number"])
def test_encoder_settings_file(db: Path, tmp_path: Path, cli_case: Cli, sbert: bytes,
                               fragments: tuple[str, ...]) -> None:
    model = _encoder_copy(tmp_path, sbert)
    proc = cli_case("run", "--backend", "encoder", "--model", str(model), "--task", "sentence-similarity",
               "--limit", "1", "--warmup", "0", "--no-progress", db=db)
    assert_one_line_error(proc, *fragments)
    assert _runs(db) == []


@pytest.mark.slow
def test_bom_dataset_and_brace_escapes_run_for_real(db: Path, tmp_path: Path) -> None:
    f = tmp_path / "bom.jsonl"
    f.write_bytes(ROWS.encode("utf-8-sig"))
    proc = cli("run", "--dataset", str(f), "--template", "Reply with {{ok}}: {text}", "--limit", "1",
               "--warmup", "0", "--max-new-tokens", "2", "--no-progress", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete" and record["counts"]["succeeded"] == 1
    assert record["task"]["template"] == "Reply with {{ok}}: {text}"
