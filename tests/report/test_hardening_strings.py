"""Strings from outside are data: never markup, never terminal control, never HTML, never a format.

A database is built directly with the store, every hostile string going into a
run as the model name, model path, dataset path, CPU name, meter note and a
prompt's error text, and into a sweep as its name and variant names.  Every
command that prints a stored string must then exit 0, show printable text
verbatim, show control characters escaped (never raw), and keep JSON exact.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli

from joulescore.store.sqlite import ResultRow, Store

#: (name, the stored string, how a terminal must show it)
HOSTILE: list[tuple[str, str, str]] = [
    ("markup-bold", "[bold]x[/]", "[bold]x[/]"),
    ("markup-close", "[/x]", "[/x]"),
    ("markup-link", "[link=file:///etc/passwd]y[/link]", "[link=file:///etc/passwd]y[/link]"),
    ("ansi-clear", "\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    ("bell", "ding\x07", "ding\\x07"),
    ("cr-overwrite", "harmless\rEVIL", "harmless\\rEVIL"),
    ("c1-csi", "\x9b31mred", "\\x9b31mred"),
    ("bidi-override", "model\u202efoog.exe", "model\\u202efoog.exe"),
    ("html-img", "<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
    ("html-script", "</script><script>alert(1)</script>", "</script><script>alert(1)</script>"),
    ("quotes", "it's \"q\" '", "it's \"q\" '"),
    ("newline", "a\nb", "a\\nb"),
    ("long", ("a-very-long-model-name-" * 218)[:5000], ("a-very-long-model-name-" * 218)[:5000]),
    ("wide", "模型-😀-👩‍🔬-ｗｉｄｅ", "模型-😀-👩‍🔬-ｗｉｄｅ"),
    ("braces", "{braces} {0} {model}", "{braces} {0} {model}"),
    ("math", "$math$ $\\alpha$", "$math$ $\\alpha$"),
    ("percent", "%s %d %(name)s %%", "%s %d %(name)s %%"),
    ("nul", "nul\x00byte", "nul\\x00byte"),  # ends a C string
]
KEYS = [key for key, _, _ in HOSTILE]
RAW = {key: raw for key, raw, _ in HOSTILE}
SHOWN = {key: shown for key, _, shown in HOSTILE}
#: every hostile string at once, for the commands that read one run
ALL = " | ".join(RAW.values())
ALL_SHOWN = " | ".join(SHOWN.values())


#: characters that must never reach a terminal raw
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\r", "\u202e", "\x00")
ALL_RUNS = ("r-all", "r-all-off", "r-all-on", "r-all-2", "r-all-3")  # five: one peer group, so the run is rated


def _store_run(store: Store, run_id: str, text: str, reasoning: str | None = None) -> None:
    spec: dict[str, Any] = {
        "config": {"model": text, "task": "chat", "protocol": "energy-score", "max_new_tokens": 10, "batch_size": 1},
        "model": {"name": text, "path": text, "backend": "llama.cpp", "quantization": "Q4_1", "parameters": 1000},
        "task": {"name": "chat", "dataset": text, "num_prompts": 2, "metric": "length"},
        "hardware": {"cpu": text, "logical_cpus": 2, "ram_gb": 8.0},
        "meter": {"kind": "estimated", "sources": ["estimator"], "includes": ["cpu"], "uncertainty_pct": 30.0,
                  "notes": [text], "domains": ["cpu"]},
        "reasoning": None if reasoning is None else {
            "mode": reasoning, "family": text, "method": text, "budget": 10, "split": text,
            "template_kwargs": {text: text}, "assistant_prefix": text, "system_suffix": text, "note": text},
    }
    store.create_run(run_id, 2, spec)
    store.add_result(run_id, ResultRow(
        prompt_index=0, prompt_id="p0", ok=True, error=None, finish_reason="length", input_tokens=20,
        output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=1.0, decode_j=3.0, low_j=3.0, high_j=6.0,
        domains={"cpu": 4.0}, text="hello"))
    store.add_result(run_id, ResultRow(
        prompt_index=1, prompt_id="p1", ok=False, error=text, finish_reason="error", input_tokens=0,
        output_tokens=0, prefill_s=0.0, decode_s=0.0, prefill_j=0.0, decode_j=0.0, low_j=0.0, high_j=0.0,
        domains={"cpu": 0.0}, text=""))
    store.set_status(run_id, "complete", store.record(run_id))


def _store_sweep(store: Store, sweep_id: str, text: str, run_id: str) -> None:
    store.create_sweep(sweep_id, text, {"name": text, "base": {"task": "chat"}, "baseline": text})
    store.set_variant(sweep_id, 0, text, {"model": text}, "complete", run_id=run_id)
    store.set_variant(sweep_id, 1, f"{text}/b2", {"model": text}, "failed", reason=text)


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("hostile") / "results.db"
    with Store(db) as store:
        for key, raw, _ in HOSTILE:
            _store_run(store, f"r-{key}", raw)
            _store_sweep(store, f"s-{key}", raw, f"r-{key}")
        for run_id in ALL_RUNS:
            _store_run(store, run_id, ALL, reasoning=run_id.removeprefix("r-all-") if "-o" in run_id else None)
        _store_sweep(store, "s-all", ALL, "r-all")
    return db


def joulescore(*args: str, db: Path, columns: int = 80, run: Cli | None = None) -> tuple[str, str]:
    """Run the CLI, piped; exit 0, no traceback, and no raw control character on stdout or stderr.

    ``run``: how to run it (``cli_case``), else a subprocess of its own.
    """
    if run is not None:  # strict UTF-8 on stdout too
        done = run(*args, db=db, env={"COLUMNS": str(columns)})
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        env = {**os.environ, "COLUMNS": str(columns)}
        proc = subprocess.run([sys.executable, "-m", "joulescore.cli", *args, "--db", str(db)],
                              capture_output=True, env=env, timeout=600)
        code = proc.returncode
        out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # strict: no undecodable bytes either
    assert code == 0, (args, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    for ch in RAW_CONTROLS:
        assert ch not in out, (args, ch, out[:2000])
        assert ch not in err, (args, ch, err[-2000:])
    return out, err


def shown_whole(text: str, out: str) -> None:
    """The escaped text appears on one line, whole (identifiers are never cut when piped)."""
    assert any(text in line for line in out.splitlines()), (text[:100], out[:3000])


def json_of(*args: str, db: Path, run: Cli | None = None) -> Any:
    out, _ = joulescore(*args, "--json", db=db, run=run)
    return json.loads(out)


def test_runs_and_board_show_every_stored_name_escaped_and_whole(hostile_db: Path) -> None:
    for command in ("runs", "board"):
        out, _ = joulescore(command, db=hostile_db)
        for key in KEYS:
            shown_whole(SHOWN[key], out)
        shown_whole(ALL_SHOWN, out)


def test_runs_and_board_json_keep_every_string_exact(hostile_db: Path) -> None:
    out, _ = joulescore("runs", "--json", db=hostile_db)
    assert "\\u001b[2J" in out and "\\u009b" in out and "\\r" in out  # escaped as JSON, not raw
    runs = {r["run_id"]: r for r in json.loads(out)}
    board = {r["run_id"]: r for r in json_of("board", db=hostile_db) if r["run_id"]}
    for key in KEYS:
        assert runs[f"r-{key}"]["model"] == RAW[key]
        assert board[f"r-{key}"]["model"] == RAW[key]
    assert runs["r-all"]["model"] == board["r-all"]["model"] == ALL


def test_sweeps_list_names_escaped_and_exact_in_json(hostile_db: Path) -> None:
    out, _ = joulescore("sweeps", db=hostile_db)
    for key in KEYS:
        shown_whole(SHOWN[key], out)
    names = {s["sweep_id"]: s["name"] for s in json_of("sweeps", db=hostile_db)}
    assert all(names[f"s-{key}"] == RAW[key] for key in KEYS)


def test_show_prints_name_note_error_and_stars_escaped(hostile_db: Path) -> None:
    out, _ = joulescore("show", "r-all", db=hostile_db)
    lines = [line for line in out.splitlines() if ALL_SHOWN in line]
    assert len(lines) >= 4, out[:3000]  # model, first error, meter note, and the stars' peer group (its CPU)
    assert any(line.startswith("stars") and "5/5" in line for line in lines), out[-3000:]


def test_show_json_round_trips_every_stored_string(hostile_db: Path) -> None:
    rec = json_of("show", "r-all", db=hostile_db)
    assert rec["model"]["name"] == rec["model"]["path"] == rec["task"]["dataset"] == ALL
    assert rec["hardware"]["cpu"] == rec["meter"]["notes"][0] == rec["errors"][0] == ALL
    assert ALL in rec["stars"]


def test_impact_and_project_print_stored_strings_escaped(hostile_db: Path) -> None:
    out, _ = joulescore("impact", "r-all", db=hostile_db)
    shown_whole(ALL_SHOWN, out)
    assert json_of("impact", "r-all", db=hostile_db)["model"] == ALL
    out, _ = joulescore("project", "r-all", "--to", "H100", db=hostile_db)
    assert "PROJECTION" in out and "H100" in out
    shown_whole(ALL_SHOWN, out)  # measured on <the stored CPU>


def test_advise_prints_variant_names_escaped_and_exact_in_json(hostile_db: Path) -> None:
    out, _ = joulescore("advise", "s-all", db=hostile_db)
    shown_whole(ALL_SHOWN, out)
    shown_whole(f"{ALL_SHOWN}/b2", out)
    advice = json_of("advise", "s-all", db=hostile_db)
    assert [v["variant"] for v in advice["variants"]] == [ALL, f"{ALL}/b2"]
    assert advice["variants"][1]["reason"] == ALL and advice["recommended"]["variant"] == ALL


def test_compare_reasoning_prints_stored_modes_escaped(hostile_db: Path) -> None:
    out, _ = joulescore("compare-reasoning", "--runs", "r-all-off,r-all-on", db=hostile_db)
    shown_whole(f"reasoning modes vs off: {ALL_SHOWN} on chat", out)
    shown_whole(f"on ({ALL_SHOWN})", out)
    result = json_of("compare-reasoning", "--runs", "r-all-off,r-all-on", db=hostile_db)
    assert result["model"] == ALL and [m["method"] for m in result["modes"]] == [ALL, ALL]


def _svg_text(path: Path) -> tuple[str, ET.Element]:
    raw = path.read_text(encoding="utf-8")
    root = ET.fromstring(raw)  # well-formed XML
    lines = ["".join(t.itertext()) for t in root.iter() if t.tag.endswith("}text") or t.tag == "text"]
    return "\n".join(lines), root


def test_label_svg_is_well_formed_and_png_renders(hostile_db: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    from joulescore.report.label import CARD_H_IN, CARD_W_IN, PNG_DPI

    svg = tmp_path / "x.svg"
    joulescore("label", "r-html-script", "-o", str(svg), db=hostile_db)
    text, root = _svg_text(svg)
    assert "</script><script>alert(1)</script>" in text
    assert not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "img")]
    joulescore("label", "r-all", "-o", str(svg), db=hostile_db)
    raw = svg.read_text(encoding="utf-8")
    assert not any(ch in raw for ch in RAW_CONTROLS)
    text, root = _svg_text(svg)
    assert "[bold]x[/] | [/x]" in text and not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "img")]
    png = tmp_path / "x.png"
    joulescore("label", "r-all", "-o", str(png), db=hostile_db)
    assert mpimg.imread(png).shape[:2] == (CARD_H_IN * PNG_DPI, CARD_W_IN * PNG_DPI)


@pytest.mark.parametrize("key", KEYS)
def test_label_shows_each_string_escaped_and_stays_on_the_card(key: str, tmp_path: Path) -> None:
    from joulescore.report.label import render_label
    from tests.records import make_record

    record = make_record(model={"name": RAW[key]}, hardware={"cpu": RAW[key]})
    text, root = _svg_text(render_label(record, "no stars: " + RAW[key], tmp_path / "l.svg"))
    assert not any(ch in text for ch in RAW_CONTROLS)
    flat = text.replace("\n", "")
    if len(SHOWN[key]) < 60:  # short enough to sit whole on the card (a line may wrap at a space)
        assert SHOWN[key].replace(" ", "") in flat.replace(" ", ""), (SHOWN[key], text)
    else:  # never wrapped: shortened around "…" in the model, the hardware and the stars note alike, in full in <title>
        titles = [t.text for t in root.iter() if t.tag == "{http://www.w3.org/2000/svg}title"]
        assert SHOWN[key][:20] in flat and text.count("…") == 3 and titles.count(SHOWN[key]) == 3
        assert sum("model-name" in line for line in text.splitlines()) == 3


def test_errors_that_quote_a_hostile_argument_stay_one_escaped_line(hostile_db: Path) -> None:
    for args in (("show", "no-such\x1b[2J\nrun"), ("show", b"no-such-\xff-run"),
                 ("label", "r-all", "-o", "x\x1b[2J.pdf"), ("run", "--resume", "r-all", "--no-progress"),
                 ("run", "--model", "m" * 5000, "--no-progress")):
        proc = subprocess.run([sys.executable, "-m", "joulescore.cli", *args, "--db", str(hostile_db)],
                              capture_output=True, timeout=600)
        err = proc.stderr.decode("utf-8")
        assert proc.returncode == 2, (args, err[-2000:])
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (args, err[-2000:])
        assert not any(ch in err for ch in RAW_CONTROLS), (args, err)


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_every_reading_command_on_each_hostile_run(key: str, hostile_db: Path, cli_case: Cli) -> None:
    out, _ = joulescore("show", f"r-{key}", db=hostile_db, run=cli_case)
    assert sum(SHOWN[key] in line for line in out.splitlines()) >= 3  # model, first error, meter note
    rec = json_of("show", f"r-{key}", db=hostile_db, run=cli_case)
    assert rec["model"]["name"] == rec["model"]["path"] == rec["task"]["dataset"] == RAW[key]
    assert rec["errors"][0] == RAW[key]
    shown_whole(SHOWN[key], joulescore("impact", f"r-{key}", db=hostile_db, run=cli_case)[0])
    joulescore("project", f"r-{key}", "--to", "H100", db=hostile_db, run=cli_case)
    shown_whole(SHOWN[key], joulescore("advise", f"s-{key}", db=hostile_db, run=cli_case)[0])


def test_an_error_text_with_an_undecodable_file_name_byte_is_stored_and_shown_escaped(tmp_path: Path) -> None:
    """``open(b"\\xff.gguf")`` errors name the file with a lone surrogate; SQLite cannot take one as it is."""
    db = tmp_path / "results.db"
    with Store(db) as store:
        _store_run(store, "r-sur", "plain-model")
        store.add_result("r-sur", ResultRow(
            prompt_index=2, prompt_id="p2", ok=False, error="cannot open /m/bad\udcff.gguf", finish_reason="error",
            input_tokens=0, output_tokens=0, prefill_s=0.0, decode_s=0.0, prefill_j=0.0, decode_j=0.0, low_j=0.0,
            high_j=0.0, domains={}, text=""))
        assert store.record("r-sur").errors[0] == "cannot open /m/bad\\udcff.gguf"
    out, _ = joulescore("show", "r-sur", db=db)
    assert "2 prompt(s) failed" in out and "cannot open /m/bad\\udcff.gguf" in out


def test_a_model_name_with_undecodable_bytes_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    proc = subprocess.run([sys.executable, "-m", "joulescore.cli", "run", "--model", b"a\xffb.gguf", "--db", str(db)],
                          capture_output=True, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.decode().strip()
    assert line.startswith("error: --model:") and "not UTF-8" in line and "\n" not in line


# --- the HTML report: what the page gets, and the page itself --------------------------------------------
# Chromium is not installed on every machine (tests/report/test_report_browser.py skips without it), so these read
# the data the page's script lays out, unpacked from the written file, and the file's own text.

def _page(html: Path) -> tuple[str, dict[str, Any]]:
    from joulescore.report.html import unpacked

    text = html.read_text(encoding="utf-8")
    block = re.search(r'<script id="report-data" type="application/gzip\+base64">(.*?)</script>', text, re.S)
    assert block is not None
    return text, json.loads(unpacked(block.group(1)))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_report_shows_every_stored_name_escaped_as_the_terminal_does(hostile_db: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    out, _ = joulescore("report", "-o", str(html), db=hostile_db)
    assert "report written" in out
    text, data = _page(html)
    assert not any(ch in text for ch in RAW_CONTROLS)  # the page's own text: header, title, origins
    raw = [s for s in _strings(data) if any(ch in s for ch in (*RAW_CONTROLS, "\n"))]
    assert not raw, raw[:5]
    models = {r["run_id"]: r["model"] for r in data["runs"]}
    for key in KEYS:
        assert models[f"r-{key}"] == SHOWN[key]  # the terminal's own escapes
        uid = next(r["uid"] for r in data["runs"] if r["run_id"] == f"r-{key}")
        assert data["details"][uid]["label"]["model"] == SHOWN[key]
        assert data["details"][uid]["errors"] == [SHOWN[key]]
    assert models["r-all"] == ALL_SHOWN


def test_report_shows_a_database_path_with_control_characters_escaped(tmp_path: Path, cli_case: Cli) -> None:
    from tests.synthetic import SyntheticRun, store_run

    db = tmp_path / "ev\x1b[2Jil\u202e\nname.db"
    with Store(db) as store:
        store_run(store, SyntheticRun("r1", "m\x00odel", [1.0] * 3, task="chat"))
    html = tmp_path / "r.html"
    proc = cli_case("report", "-o", str(html), db=db)
    assert proc.returncode == 0, proc.stderr
    text, data = _page(html)
    assert not any(ch in text for ch in RAW_CONTROLS)
    shown = str(tmp_path / "ev\\x1b[2Jil\\u202e\\nname.db")
    assert data["origins"][0]["path"] == shown and data["runs"][0]["origin"] == shown
    assert shown in text  # the header lists the databases, rendered by the template
    assert data["runs"][0]["model"] == "m\\x00odel"
