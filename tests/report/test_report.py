"""``joulescore report``'s data and file, without a browser: golden figures, merging, escaping, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from joulescore.impact.summary import impact_data
from joulescore.report.aies import aies_view
from joulescore.report.data import interference_view, wh_band
from joulescore.report.details import points_per_run, prompt_series
from joulescore.report.html import render_html, safe_json, unpacked
from joulescore.report.page import build_report_data
from joulescore.report.requests import idle_share, summarise
from joulescore.store.requests import RequestStore
from joulescore.store.sqlite import Store
from tests.conftest import assert_one_line_error, cli
from tests.records import make_record
from tests.report_db import IDLE_J, IDLE_S, XSS, build_db
from tests.synthetic import SyntheticRun, store_run


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_db(tmp_path_factory.mktemp("report") / "results.db")


@pytest.fixture(scope="module")
def data(db: Path) -> dict[str, Any]:
    return build_report_data([db])


def embedded(html: str) -> dict[str, Any]:
    block = re.search(r'<script id="report-data" type="application/gzip\+base64">(.*?)</script>', html, re.S)
    assert block is not None
    return json.loads(unpacked(block.group(1)))


def test_golden_every_figure_is_the_records_own(db: Path, data: dict[str, Any]) -> None:
    with Store(db) as store:
        records = {r.run_id: r for r in store.records()}
        rows = {r.run_id: store.results(r.run_id) for r in records.values()}
    assert {r["run_id"] for r in data["runs"]} == set(records)
    for row in data["runs"]:
        rec = records[row["run_id"]]
        assert row["wh"] == rec.wh_per_1000_queries and row["j_per_query"] == rec.j_per_query
        assert row["j_per_token"] == rec.j_per_output_token and row["quality"] == rec.quality.value
        assert (row["prefill_pct"], row["decode_pct"]) == (rec.phase_split.prefill_pct, rec.phase_split.decode_pct)
        interval = getattr(rec, "interval", None)
        if interval:  # the 95% interval where the record has one, else the meter's band
            assert (row["wh_low"], row["wh_high"], row["band"]) == (pytest.approx(
                interval.j_per_query_low / 3.6), pytest.approx(interval.j_per_query_high / 3.6), "95% interval")
        else:
            assert row["wh_low"] == pytest.approx(rec.energy.low_j / rec.counts.succeeded / 3.6)
            assert row["wh_high"] == pytest.approx(rec.energy.high_j / rec.counts.succeeded / 3.6)
            assert row["band"] == "meter band"
        busy = rec.interference
        assert (row["disturbed"], row["disturbed_reason"]) == (
            (busy.disturbed, busy.reason or "") if busy is not None else (False, ""))
        assert (row["model"], row["engine"], row["batch"], row["date"]) == (
            rec.model.name, rec.model.backend, rec.batching.batch_size, rec.created_at[:10])
        assert row["kind"] == rec.meter.kind
        detail = data["details"][row["uid"]]
        assert detail["energy"] == rec.energy.model_dump(mode="json")
        assert detail["meter"] == rec.meter.model_dump(mode="json")
        prompts = detail["prompts"]
        assert prompts["energy_j"] == pytest.approx([r.energy_j for r in rows[rec.run_id]], rel=1e-4)
        assert sum(prompts["energy_j"]) == pytest.approx(rec.energy.total_j, rel=1e-4)
        assert prompts["ttft_s"] == pytest.approx([r.prefill_s for r in rows[rec.run_id]], rel=1e-4)
        central = impact_data(rec, region="WLD", pue=None, wue=None, g_per_kwh=None, grid_file=None,
                              renewable_share=0.0, price_per_kwh=None, queries_per_day=1e9, compare=[])
        for key in ("facility_kwh", "carbon_g", "water_l"):
            assert detail["impact"]["per_query"]["central"][key] == central["per_query"][key]
            assert detail["impact"]["per_query"]["low"][key] == central["per_query_band"]["low"][key]
            assert detail["impact"]["per_query"]["high"][key] == central["per_query_band"]["high"][key]


def test_golden_ai_energy_score_is_the_view_show_prints(db: Path, data: dict[str, Any]) -> None:
    with Store(db) as store:
        records = {r.run_id: r for r in store.records()}
    statuses = set()
    for row in data["runs"]:
        view = aies_view(records[row["run_id"]])
        assert data["details"][row["uid"]]["aies"] == json.loads(json.dumps(view.as_dict()))
        assert (row["aies_status"], row["aies_line"], row["aies_stars"]) == (view.status, view.line, view.stars_low)
        statuses.add(view.status)
        if view.status == "projected":  # never shown as measured
            assert row["aies"].startswith("PROJECTED ") and view.line.startswith("PROJECTED ")
        elif view.status == "comparable":
            assert row["aies"].endswith(" MEASURED") and "MEASURED GPU-only" in view.line
        else:
            assert row["aies"] == "none" and row["aies_stars"] is None and view.line.startswith("no AI Energy Score: ")
        assert row["stars"] is None or isinstance(row["stars"], int)  # the local stars stay their own column
    assert statuses == {"comparable", "projected", "none"}
    h100 = next(r for r in data["runs"] if r["run_id"] == "c-h100")
    assert "H100" in h100["aies_line"] and h100["aies_scale"].startswith("AI Energy Score")
    assert "encoder" in next(r for r in data["runs"] if r["run_id"] == "c-enc")["aies_line"]


def test_golden_live_traffic_is_what_requests_prints(db: Path, data: dict[str, Any]) -> None:
    with RequestStore(db) as store:
        rows = store.requests_since(0.0)
    (traffic,) = data["traffic"]
    assert traffic["origin"] == str(db) and traffic["requests"] == len(rows) == 13
    assert (traffic["idle_j"], traffic["idle_s"]) == (IDLE_J, IDLE_S)
    assert traffic["idle_share"] == idle_share(sum(r.energy_j for r in rows), IDLE_J)
    library = summarise(rows)
    assert [m["model"] for m in traffic["models"]] == [s.model for s in library] == sorted({XSS, "chat-model"})
    for shown, s in zip(traffic["models"], library):
        assert (shown["requests"], shown["ok"], shown["failed"], shown["p50_j"], shown["p90_j"]) == (
            s.requests, s.ok, s.failed, s.p50_j, s.p90_j)
        assert (shown["j_per_output_token"], shown["energy_j"]) == (s.j_per_output_token, s.energy_j)
        assert shown["mark"] == "MEASURED"
        assert shown["band_below_pct"] == pytest.approx(10.0) and shown["band_above_pct"] == pytest.approx(10.0)
    series = traffic["series"]
    assert (series["requests"], series["shown"], series["step"]) == (13, 13, 1)
    assert series["energy_j"] == [r.energy_j for r in rows] and series["status"] == [r.status for r in rows]
    assert series["time_utc"][0] == "2026-01-01 00:00:00.000"
    proc = cli("requests", "--since", "36500d", "--json", db=db)  # the terminal's figures, over the same requests
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["idle_share"] == traffic["idle_share"]
    for m in printed["models"]:
        shown = next(t for t in json.loads(json.dumps(traffic["models"])) if t["model"] == m["model"])
        assert {k: shown[k] for k in m} == m


def test_stars_and_references_follow_the_board(data: dict[str, Any]) -> None:
    sentiment = [r for r in data["runs"] if r["task"] == "sentiment"]
    assert len(sentiment) == 8 and all(r["stars"] is not None for r in sentiment)  # one peer group of 8
    assert min(sentiment, key=lambda r: r["wh"])["stars"] == 5
    chat = [r for r in data["runs"] if r["task"] == "chat"]
    assert all(r["stars"] is None for r in chat)
    assert all(("DISTURBED" if r["disturbed"] else "no stars: peer group has") in r["stars_note"] for r in chat)
    refs = [r for r in data["references"] if r["task"] == "chat"]
    assert refs and all(r["source"] and "not rated" in r["note"] for r in refs)
    assert "stars" not in refs[0]


def test_sweeps_and_reasoning_modes_are_the_commands_figures(data: dict[str, Any]) -> None:
    (sweep,) = data["sweeps"]
    assert [v["variant"] for v in sweep["variants"]] == ["two", "one"]
    assert sweep["recommended"]["variant"] == "one" and sweep["recommended"]["energy_ratio_vs_baseline"] == 1.333
    assert {v["uid"] for v in sweep["variants"]} == {"0:sw1-two", "0:sw1-one"}
    (group,) = data["reasoning"]
    assert [m["mode"] for m in group["modes"]] == ["off", "on"]
    assert group["modes"][1]["energy_ratio"] == pytest.approx(3.0)
    assert group["verdict"].startswith("on: 3x the energy")


def test_several_databases_merge_and_runs_keep_their_origin(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with Store(other) as store:  # the same run id on another machine is another run
        store_run(store, SyntheticRun("s0", "from-the-other-machine", [9.0] * 5))
    merged = build_report_data([db, other], task="sentiment")
    same_id = [r for r in merged["runs"] if r["run_id"] == "s0"]
    assert {(r["uid"], r["origin"]) for r in same_id} == {("0:s0", str(db)), ("1:s0", str(other))}
    assert {r["model"] for r in same_id} == {"model-0", "from-the-other-machine"}
    assert all(r["task"] == "sentiment" for r in merged["runs"])
    assert [o["path"] for o in merged["origins"]] == [str(db), str(other)]
    assert [t["origin"] for t in merged["traffic"]] == [str(db)]  # a database without requests: no section
    alone = build_report_data([other])
    assert alone["traffic"] == [] and 'id="traffic"' not in render_html(alone)
    assert 'id="traffic"' in render_html(merged)


def test_long_runs_are_sampled_evenly_and_say_so(tmp_path: Path) -> None:
    with Store(tmp_path / "long.db") as store:
        store_run(store, SyntheticRun("long", "m", [float(k) + 1 for k in range(120)]))
        series = prompt_series(store.answered_figures()["long"], 50)
    assert (series["answered"], series["step"], series["shown"]) == (120, 3, 40)
    assert series["index"][:3] == [0, 3, 6]
    assert points_per_run(1) == 2_000 and points_per_run(2_000) == 100 and points_per_run(10**6) == 50


def test_interference_and_interval_are_read_where_a_record_has_them() -> None:
    plain = make_record()
    assert interference_view(plain) == {"disturbed": False, "reason": "", "j_per_query_ci95": None}
    marked = make_record(interference={"disturbed": True, "reason": "others used 48% of the CPU"},
                         interval={"j_per_query_low": 5.0, "j_per_query_high": 7.0, "n": 10, "method": "bootstrap",
                                   "wh_per_1000_queries_low": 5.0 / 3.6, "wh_per_1000_queries_high": 7.0 / 3.6})
    assert interference_view(marked) == {"disturbed": True, "reason": "others used 48% of the CPU",
                                         "j_per_query_ci95": [5.0, 7.0]}
    assert wh_band(marked, [5.0, 7.0]) == (5.0 / 3.6, 7.0 / 3.6, "95% interval")
    assert wh_band(plain, None)[2] == "meter band"


def test_the_data_block_cannot_close_its_script_element() -> None:
    text = safe_json({"model": XSS, "note": "</script><script>alert(1)</script> <!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["model"] == XSS


def test_cli_writes_one_self_contained_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.html"
    proc = cli("report", "--db", str(db), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "report written" in proc.stdout and "13 runs, 2 tasks, 1 sweeps" in proc.stdout
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch
    assert XSS not in html  # the hostile name only ever appears escaped
    assert "Content-Security-Policy" in html and "connect-src 'none'" in html
    page_data, fresh = embedded(html), build_report_data([db])
    page_data.pop("generated_at"), fresh.pop("generated_at")
    assert page_data == json.loads(json.dumps(fresh))  # the page carries exactly the data, nothing lost


def test_bad_input_is_one_line(db: Path, tmp_path: Path) -> None:
    assert_one_line_error(cli("report", "--db", str(tmp_path / "missing.db"), "-o", str(tmp_path / "r.html")),
                          "no results database at")
    assert_one_line_error(cli("report", "--db", str(db), "-o", str(tmp_path)), "is a folder")
    assert_one_line_error(cli("report", "--db", str(db), "--rating", "deciles"), "unknown rating rule")
    assert_one_line_error(cli("report", "--db", str(db), "--region", "Atlantis", "-o", str(tmp_path / "r.html")),
                          "Atlantis")
    assert not (tmp_path / "missing.db").exists()
