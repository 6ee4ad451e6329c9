"""Files a command writes and files it reads, hardened (issue 23, round 3).

No command writes over a file it reads, however the path is spelled (``./``, a symlink, a hard
link, SQLite's ``-wal`` beside it), nor over a file that is not a previous output of its own kind
unless ``--force`` is given.  Reading commands open the database read-only: a missing, empty or
foreign file is a one-line error and is left as it was.  A database named twice, or a copy of it,
counts each run once in a report.  Real SQLite files, the real CLI (one subprocess case per class,
the variants in-process).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, assert_one_line_error, cli, cli_in_process

from joulescore.errors import BadInput
from joulescore.report.html import unpacked
from joulescore.store.sqlite import Store
from tests.synthetic import SyntheticRun, store_run


def _two_peers(path: Path) -> Path:
    """Two chat runs of one peer group (stars among 2), and nothing else."""
    with Store(path) as store:
        store_run(store, SyntheticRun("peer-a", "model-a", [2.0] * 4, task="chat"))
        store_run(store, SyntheticRun("peer-b", "model-b", [6.0] * 4, task="chat"))
    return path


@pytest.fixture
def two(tmp_path: Path) -> Path:
    return _two_peers(tmp_path / "c.db")


def page_data(html: Path) -> dict[str, Any]:
    """The data the report page gets (what its script lays out), from the written file."""
    block = re.search(r'<script id="report-data" type="application/gzip\+base64">(.*?)</script>',
                      html.read_text(encoding="utf-8"), re.S)
    assert block is not None
    return json.loads(unpacked(block.group(1)))


def _is_joulescore_db(path: Path) -> bool:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id")] == ["peer-a", "peer-b"]


# --- 1. no command writes over a file it reads, or over a file not its own ---------------------------

def test_report_refuses_to_write_over_its_own_database(two: Path) -> None:
    before = two.read_bytes()
    proc = cli("report", "--db", str(two), "-o", str(two))
    assert_one_line_error(proc, f"-o {two} is {two}, which this command reads")
    assert two.read_bytes() == before and _is_joulescore_db(two)


@pytest.mark.parametrize("spelling", ["dot-slash", "symlink", "hard-link", "wal", "force"])
def test_report_refuses_every_other_name_of_the_database_it_reads(two: Path, spelling: str) -> None:
    with Store(two) as store:  # an open writer keeps the -wal file beside the database
        store.list_runs()
        wal = two.with_name(two.name + "-wal")
        args: tuple[str, ...] = ()
        if spelling == "dot-slash":
            target = f"{two.parent}/./{two.name}"
        elif spelling == "symlink":
            (two.parent / "alias.html").symlink_to(two)
            target = str(two.parent / "alias.html")
        elif spelling == "hard-link":
            os.link(two, two.parent / "linked.html")
            target = str(two.parent / "linked.html")
        elif spelling == "wal":
            assert wal.exists()
            target = str(wal)
        else:
            target, args = str(two), ("--force",)  # --force never allows writing over what is read
        before = Path(target).read_bytes()
        proc = cli_in_process("report", "--db", str(two), "-o", target, *args)
        assert_one_line_error(proc, "which this command reads")
        assert Path(target).read_bytes() == before
    assert _is_joulescore_db(two)


def _other_programs_db(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('Ada')")
    return path


def test_report_refuses_to_overwrite_another_programs_sqlite_file_without_force(two: Path, tmp_path: Path) -> None:
    other = _other_programs_db(tmp_path / "another-programs.sqlite")
    before = other.read_bytes()
    proc = cli("report", "--db", str(two), "-o", str(other))
    assert_one_line_error(proc, f"-o {other} exists and is not a previous joulescore report", "--force")
    assert other.read_bytes() == before
    forced = cli_in_process("report", "--db", str(two), "-o", str(other), "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(page_data(other)["runs"]) == 2


def test_report_overwrites_a_previous_report_and_refuses_a_plain_html_page(two: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    for _ in range(2):  # the second time over the first report: its own kind of output
        proc = cli_in_process("report", "--db", str(two), "-o", str(page))
        assert proc.returncode == 0, proc.stderr
    mine = tmp_path / "mine.html"
    mine.write_text("<!DOCTYPE html><title>my notes</title>\n")
    assert_one_line_error(cli_in_process("report", "--db", str(two), "-o", str(mine)), "not a previous")
    assert mine.read_text() == "<!DOCTYPE html><title>my notes</title>\n"


def test_label_refuses_its_database_and_a_foreign_svg_but_redraws_its_own(tmp_path: Path) -> None:
    db = _two_peers(tmp_path / "runs.png")  # a database whose name ends like a label
    before = db.read_bytes()
    assert_one_line_error(cli_in_process("label", "peer-a", "--db", str(db), "-o", str(db)), "which this command reads")
    assert db.read_bytes() == before
    drawing = tmp_path / "drawing.svg"
    drawing.write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>\n')
    assert_one_line_error(cli_in_process("label", "peer-a", "--db", str(db), "-o", str(drawing)),
                          "not a previous joulescore label", "--force")
    assert "circle" in drawing.read_text()
    label = tmp_path / "label.svg"
    for _ in range(2):
        proc = cli_in_process("label", "peer-a", "--db", str(db), "-o", str(label))
        assert proc.returncode == 0, proc.stderr
    forced = cli_in_process("label", "peer-a", "--db", str(db), "-o", str(drawing), "--force")
    assert forced.returncode == 0 and "model-a" in drawing.read_text()


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_label_of_a_run_whose_meter_states_no_band_is_drawn_and_redrawn(tmp_path: Path, suffix: str) -> None:
    db = tmp_path / "m.db"
    with Store(db) as store:
        store_run(store, SyntheticRun("m1", "measured-model", [2.0] * 3, task="chat", kind="measured",
                                      uncertainty_pct=None))
    label = tmp_path / f"label{suffix}"
    for _ in range(2):  # the second time over the first: the file names its maker, in SVG and PNG alike
        proc = cli_in_process("label", "m1", "-o", str(label), db=db)
        assert proc.returncode == 0, proc.stderr
    if suffix == ".svg":  # a measured part states its counter; no band is made up for it
        text = label.read_text(encoding="utf-8")
        assert "CPU measured (synthetic" in text and "±" not in text


def test_measure_refuses_a_foreign_output_before_the_command_runs(tmp_path: Path) -> None:
    other = _other_programs_db(tmp_path / "data.sqlite")
    before = other.read_bytes()
    ran = tmp_path / "ran"
    proc = cli_in_process("measure", "--meter", "estimator", "-o", str(other), "--", "touch", str(ran))
    assert_one_line_error(proc, f"--output {other} exists and is not a previous measure report")
    assert other.read_bytes() == before and not ran.exists()
    report = tmp_path / "m.json"
    for _ in range(2):  # a previous measure report may be written over
        proc = cli_in_process("measure", "--meter", "estimator", "-o", str(report), "--", "true")
        assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["command"] == ["true"]


def test_run_json_is_never_written_over_a_file_that_is_not_that_runs(two: Path, tmp_path: Path) -> None:
    from joulescore.bench.session import finish

    out = tmp_path / "runs"
    (out / "peer-a").mkdir(parents=True)
    (out / "peer-a" / "run.json").write_text('{"mine": true}\n')
    with Store(two) as store:
        with pytest.raises(BadInput, match=r"peer-a/run.json exists and is not a previous run.json of run peer-a"):
            finish(store, "peer-a", out)
        assert (out / "peer-a" / "run.json").read_text() == '{"mine": true}\n'
        finish(store, "peer-b", out)  # a fresh one is written, and written again over itself
        finish(store, "peer-b", out)
    assert json.loads((out / "peer-b" / "run.json").read_text())["run_id"] == "peer-b"


# --- 2. reading commands never create or change a database ------------------------------------------

READERS: list[tuple[str, ...]] = [
    ("runs",), ("board",), ("report", "-o", "{tmp}/r.html"), ("show", "x"), ("sweeps",), ("advise", "x"),
    ("impact", "x"), ("project", "x", "--to", "H100"), ("label", "x", "-o", "{tmp}/l.svg"),
    ("compare-reasoning", "--runs", "x,y"),
]


@pytest.mark.parametrize("args", READERS, ids=[a[0] for a in READERS])
@pytest.mark.parametrize("kind", ["empty", "missing", "text", "folder"])
def test_reading_commands_leave_a_non_database_as_it_was(tmp_path: Path, cli_case: Cli, args: tuple[str, ...],
                                                         kind: str) -> None:
    db = tmp_path / "z.db"
    if kind == "empty":
        db.touch()
    elif kind == "text":
        db.write_text("not a database\n")
    elif kind == "folder":
        db.mkdir()
    says = {"empty": "is an empty file (0 bytes), not a results database", "missing": "no results database at",
            "text": "is not a SQLite database", "folder": "is a folder, not a results database"}[kind]
    argv = [a.format(tmp=tmp_path) for a in args]
    assert_one_line_error(cli_case(*argv, db=db), f"{db}", says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing" else ["z.db"])
    if kind == "empty":
        assert db.stat().st_size == 0
    elif kind == "text":
        assert db.read_text() == "not a database\n"


def test_runs_on_the_default_database_does_not_make_it(tmp_path: Path) -> None:
    default = tmp_path / "data" / "joulescore.db"
    proc = cli_in_process("runs", env={"JOULESCORE_DB": str(default)})
    assert_one_line_error(proc, f"no results database at {default}")
    assert not default.parent.exists()


def test_board_reads_a_database_in_a_folder_it_may_not_write(two: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: a read-only folder cannot be made")
    two.parent.chmod(0o555)
    try:
        proc = cli_in_process("board", "--json", db=two)
    finally:
        two.parent.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert {r["run_id"] for r in json.loads(proc.stdout)} >= {"peer-a", "peer-b"}


# --- 3. each run counts once in a report -------------------------------------------------------------

def _stars(html: Path) -> dict[str, Any]:
    return {r["run_id"]: r["stars"] for r in page_data(html)["runs"]}


def test_report_reads_a_database_named_three_times_once(two: Path, tmp_path: Path) -> None:
    once, thrice = tmp_path / "once.html", tmp_path / "thrice.html"
    assert cli_in_process("report", "--db", str(two), "-o", str(once)).returncode == 0
    proc = cli("report", "--db", str(two), "--db", str(two), "--db", f"{two.parent}/./{two.name}", "-o", str(thrice))
    assert proc.returncode == 0, proc.stderr
    assert "report written" in proc.stdout and "(2 runs," in proc.stdout
    assert proc.stdout.count("read once") == 2
    data = page_data(thrice)
    assert [o["path"] for o in data["origins"]] == [str(two)]
    assert sorted(r["run_id"] for r in data["runs"]) == ["peer-a", "peer-b"]
    assert _stars(thrice) == _stars(once)
    assert {r["peer_group"] for r in data["runs"]} == {r["peer_group"] for r in page_data(once)["runs"]}


@pytest.mark.parametrize("alias", ["symlink", "hard-link", "copy"])
def test_report_counts_a_run_once_through_an_alias_or_a_copy_of_its_database(two: Path, tmp_path: Path,
                                                                             alias: str) -> None:
    import shutil

    other = tmp_path / "other.db"
    if alias == "symlink":
        other.symlink_to(two)
    elif alias == "hard-link":
        os.link(two, other)
    else:
        shutil.copy(two, other)
        with Store(other) as store:  # the copy went on to hold a run of its own
            store_run(store, SyntheticRun("peer-c", "model-c", [4.0] * 4, task="chat"))
    once, both = tmp_path / "once.html", tmp_path / "both.html"
    assert cli_in_process("report", "--db", str(two), "-o", str(once)).returncode == 0
    proc = cli_in_process("report", "--db", str(two), "--db", str(other), "-o", str(both))
    assert proc.returncode == 0, proc.stderr
    runs = page_data(both)["runs"]
    if alias == "copy":
        assert sorted(r["run_id"] for r in runs) == ["peer-a", "peer-b", "peer-c"]
        assert "2 of the runs in --db" in proc.stdout and "counted once" in proc.stdout
        assert {r["run_id"]: r["origin"] for r in runs}["peer-c"] == str(other)
    else:
        assert _stars(both) == _stars(once) and len(page_data(both)["origins"]) == 1


def test_a_copied_database_shows_its_proxy_traffic_once(two: Path, tmp_path: Path) -> None:
    import shutil

    from tests.report_db import add_traffic

    add_traffic(two)
    copy = Path(shutil.copy(two, tmp_path / "copy.db"))
    both = tmp_path / "both.html"
    proc = cli_in_process("report", "--db", str(two), "--db", str(copy), "-o", str(both))
    assert proc.returncode == 0, proc.stderr
    assert [t["origin"] for t in page_data(both)["traffic"]] == [str(two)]
    assert "proxy requests in --db" in proc.stdout and "shown once" in proc.stdout


# --- 4. project refuses what impact refuses -------------------------------------------------------------

@pytest.mark.parametrize("answered", ["none-stored", "all-failed"])
def test_project_refuses_a_run_with_no_answered_prompt(tmp_path: Path, cli_case: Cli, answered: str) -> None:
    from joulescore.bench.session import finish
    from joulescore.store.rows import RowExtra
    from joulescore.store.sqlite import ResultRow
    from tests.store.test_hardening_numbers import make_run

    db = tmp_path / "r.db"
    make_run(db, "empty", stored=0)
    if answered == "all-failed":
        with Store(db) as store:
            for i in range(4):
                store.add_result("empty", ResultRow(i, f"p{i}", False, "RuntimeError: engine fell over", None, 0, 0,
                                                    0.1, 0.0, 0.5, 0.0, 0.4, 0.6, {"cpu": 0.5}, "", RowExtra()))
            finish(store, "empty", None)
    impact = cli_in_process("impact", "empty", db=db)
    assert_one_line_error(impact, "run empty has no answered queries")
    assert_one_line_error(cli_case("project", "empty", "--to", "H100", db=db), "run empty has no answered queries")
    assert_one_line_error(cli_in_process("project", "empty", "--to", "H100", "--json", db=db), "no answered")
