"""The report in a real browser: Debian's Chromium, driven by Playwright, opening the file from ``file://``.

One browser and one report serve every test.  With ``JOULESCORE_SCREENSHOTS=DIR`` the
leaderboard and a run section are saved there (the README's pictures come from here:
``JOULESCORE_SCREENSHOTS=docs pytest tests/report/test_report_browser.py``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from joulescore.report.html import write_report
from joulescore.report.page import build_report_data
from tests.report_db import BUSY_REASON, XSS, build_db

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    return os.environ.get("JOULESCORE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if chromium_path() is None:
    pytest.skip("no Chromium here: apt-get install chromium (or set JOULESCORE_CHROMIUM)", allow_module_level=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("report-browser")
    data = build_report_data([build_db(folder / "results.db")])
    return write_report(data, folder / "report.html"), data


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        except Exception as exc:  # a broken or missing browser binary: skip, with what went wrong
            pytest.skip(f"Chromium at {chromium_path()} does not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()


def wait_until_drawn(page: Any, timeout_s: float = 120.0) -> float:
    """Chromium's clock when the charts were drawn.  Polled from here: Playwright's in-page polling
    (``wait_for_function``) evaluates a string, which the report's Content-Security-Policy refuses."""
    deadline = time.monotonic() + timeout_s
    while (drawn := page.evaluate("window.joulescoreChartsReady")) is None:
        assert time.monotonic() < deadline, "the report's charts were not drawn in time"
        time.sleep(0.05)
    return float(drawn)


class Opened:
    """A page with the report open, and everything it said or asked for while loading."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        self.console: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.as_uri())
        wait_until_drawn(self.page)

    def board_uids(self) -> list[str]:
        return list(self.page.eval_on_selector_all("#board tbody tr", "rows => rows.map(r => r.dataset.uid)"))

    def tab(self, task: str) -> None:
        self.page.click(f'#tabs button[data-task="{task}"]')


@pytest.fixture(scope="module")
def opened(browser: Any, report: tuple[Path, dict[str, Any]]) -> Iterator[Opened]:
    o = Opened(browser, report[0])
    yield o
    o.page.close()


@pytest.fixture
def page(opened: Opened) -> Opened:
    """The shared page, back on the sentiment tab with every filter reset."""
    opened.tab("chat")
    opened.tab("sentiment")
    return opened


def test_loads_offline_with_no_console_errors(opened: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    assert opened.console == []
    assert opened.requests == [report[0].as_uri()]  # the file itself, nothing else
    assert opened.page.evaluate("typeof window.Plotly") == "object"


def test_leaderboard_lists_the_runs_of_each_task(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    data = report[1]
    for task in ("sentiment", "chat"):
        page.tab(task)
        expected = sorted(r["uid"] for r in data["runs"] if r["task"] == task)
        assert sorted(page.board_uids()) == expected
    page.tab("sentiment")
    first = page.page.inner_text("#board tbody tr:first-child")
    row = min((r for r in data["runs"] if r["task"] == "sentiment"), key=lambda r: r["wh"])
    assert row["model"] in first and "MEASURED" in first and "★★★★★" in first
    assert "no published figure fits this task" in page.page.inner_text("#references")
    page.tab("chat")  # published chat figures sit beside the runs, with their source, unrated
    refs = page.page.inner_text("#references")
    assert "published (" in refs and "not rated" in refs and "★" not in refs


def test_a_filter_click_hides_the_right_rows(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    sentiment = [r for r in report[1]["runs"] if r["task"] == "sentiment"]
    page.page.click('fieldset[data-filter="engine"] input[value="llama.cpp"]')
    assert sorted(page.board_uids()) == sorted(r["uid"] for r in sentiment if r["engine"] != "llama.cpp")
    page.page.click('fieldset[data-filter="kind"] input[value="estimated"]')
    assert page.board_uids() == []
    page.page.click('fieldset[data-filter="engine"] input[value="llama.cpp"]')
    assert page.board_uids() == [r["uid"] for r in sentiment if r["kind"] == "measured"]


def test_sorting_by_a_column(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    runs = [r for r in report[1]["runs"] if r["task"] == "sentiment"]
    page.page.click('#board th[data-key="quality"]')
    quality = [r["quality"] for r in sorted(runs, key=lambda r: r["quality"])]
    shown = [next(r["quality"] for r in runs if r["uid"] == uid) for uid in page.board_uids()]
    assert shown == quality
    page.page.click('#board th[data-key="quality"]')
    assert page.page.get_attribute('#board th[data-key="quality"]', "aria-sort") == "descending"
    shown = [next(r["quality"] for r in runs if r["uid"] == uid) for uid in page.board_uids()]
    assert shown == sorted(quality, reverse=True)


def test_the_scatter_draws_a_mark_per_run_and_the_frontier(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    runs = [r for r in report[1]["runs"] if r["task"] == "sentiment"]
    points = page.page.locator("#scatter svg .scatterlayer .trace:first-child path.point")
    assert points.count() == len(runs)
    assert page.page.locator("#scatter svg .scatterlayer path.js-line").count() >= 1  # the Pareto frontier
    assert page.page.locator("#scatter svg .errorbar").count() == len(runs)


def test_energy_budget_greys_out_what_it_excludes(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    runs = [r for r in report[1]["runs"] if r["task"] == "sentiment"]
    budget = sorted(r["wh"] for r in runs)[3]
    page.page.eval_on_selector("#energy-budget", "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", budget)
    greyed = page.page.eval_on_selector_all("#board tbody tr.excluded", "rows => rows.map(r => r.dataset.uid)")
    assert sorted(greyed) == sorted(r["uid"] for r in runs if r["wh"] > budget)
    colours = page.page.evaluate("document.getElementById('scatter').data[0].marker.color")
    assert colours.count("#cccccc") == len(greyed)


def test_csv_holds_the_visible_rows(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    page.page.click('fieldset[data-filter="engine"] input[value="transformers"]')
    with page.page.expect_download() as download:
        page.page.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [f"0:{r['run_id']}" for r in rows] == page.board_uids()
    by_id = {r["run_id"]: r for r in report[1]["runs"]}
    assert all(float(r["wh"]) == by_id[r["run_id"]]["wh"] for r in rows)
    assert any(r["model"] == XSS for r in rows)  # as text; a leading = + - @ would get a quote


def test_an_injected_model_name_stays_text(page: Opened) -> None:
    assert page.dialogs == []
    assert page.page.locator('img[src="x"]').count() == 0 and page.page.locator("#board img").count() == 0
    assert XSS in page.page.inner_text("#board")
    page.page.click(f'#board a.run-link:text-is("{XSS}")')
    page.page.wait_for_selector("#run .run-section h3")
    assert XSS in page.page.inner_text("#run") and "<script>alert(2)</script>" in page.page.inner_text("#run")
    assert page.page.locator("#run script, #run img").count() == 0
    # the data, plotly as text, the page script and plotly run from that text: no other script exists
    assert page.dialogs == [] and page.page.evaluate("document.scripts.length") == 4


def test_a_run_section_shows_its_label_charts_and_meter(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    run = next(r for r in report[1]["runs"] if r["run_id"] == "s0")
    page.page.click('#board a.run-link:text-is("model-0")')
    section = page.page.locator(f'#run .run-section[data-uid="{run["uid"]}"]')
    section.wait_for()
    text = section.inner_text()
    assert "AI ENERGY LABEL" in text and "MEASURED" in text and f"{run['wh']:.4g}" in text
    assert "synthetic: written by tests/synthetic.py" in text  # the meter's sources, in full
    assert section.locator(".js-plotly-plot").count() == 4  # energy histogram, J vs input tokens, latency, power
    assert section.locator(".js-plotly-plot .bars path").count() > 0
    assert page.page.evaluate("location.hash") == "#run=" + run["uid"].replace(":", "%3A")
    assert "Impact per query" in text and "WLD" in text


def test_full_page_screenshot_is_not_blank(page: Opened, tmp_path: Path) -> None:
    from matplotlib.image import imread

    page.page.click('#board a.run-link:text-is("model-0")')
    shot = tmp_path / "full.png"
    page.page.screenshot(path=str(shot), full_page=True)
    pixels = imread(str(shot))
    assert pixels.shape[0] > 1500 and pixels.std() > 0.05  # tall, and far from one flat colour
    folder = os.environ.get("JOULESCORE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.page.locator("#leaderboard").screenshot(path=str(Path(folder) / "report-leaderboard.png"))
        page.page.locator("#run .run-section").screenshot(path=str(Path(folder) / "report-run.png"))
        page.page.locator("#traffic").screenshot(path=str(Path(folder) / "report-traffic.png"))


def test_sweeps_and_reasoning_modes_are_laid_out(page: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    sweep = page.page.inner_text("#sweep-list")
    assert "threads: sweep sw1 on sentiment" in sweep and "recommended" in sweep and ": one," in sweep
    assert page.page.locator("#sweep-list .js-plotly-plot path.point").count() == 2  # one mark per variant
    page.page.click('#sweep-list a:text-is("one")')  # a variant links to its run's page
    page.page.wait_for_selector('#run .run-section[data-uid="0:sw1-one"]')
    modes = page.page.inner_text("#reasoning-list")
    assert "thinker on chat" in modes and "off (prompted)" in modes and "on (prompted)" in modes
    assert report[1]["reasoning"][0]["verdict"] in modes
    chart = "document.querySelector('#reasoning-list .js-plotly-plot')"
    assert page.page.evaluate(f"{chart}.data[0].y") == [m["j_per_query"] for m in report[1]["reasoning"][0]["modes"]]
    assert page.page.locator("#reasoning-list .js-plotly-plot .bars path").count() >= 2  # drawn, not only data


def test_a_disturbed_run_is_marked_with_its_reason_and_interval(page: Opened) -> None:
    page.tab("chat")
    row = page.page.locator('#board tr[data-uid="0:c-busy"]')
    mark = row.locator('td[data-key="disturbed"] .disturbed')
    assert mark.inner_text() == "DISTURBED" and mark.get_attribute("title") == BUSY_REASON
    assert "95% interval" in row.locator('td[data-key="wh"]').inner_text()
    assert page.page.locator('#board td[data-key="disturbed"] .disturbed').count() == 1
    row.locator("a.run-link").click()
    page.page.wait_for_selector('#run .run-section[data-uid="0:c-busy"]')
    assert f"DISTURBED: {BUSY_REASON}" in page.page.inner_text("#run")


def test_the_ai_energy_score_column_is_its_own_and_says_projected(page: Opened,
                                                                   report: tuple[Path, dict[str, Any]]) -> None:
    runs = {r["uid"]: r for r in report[1]["runs"]}
    page.tab("chat")
    for uid in page.board_uids():
        cell = page.page.locator(f'#board tr[data-uid="{uid}"] td[data-key="aies_stars"] .aies')
        assert cell.inner_text() == runs[uid]["aies"] and cell.get_attribute("title") == runs[uid]["aies_line"]
        local = page.page.inner_text(f'#board tr[data-uid="{uid}"] td[data-key="stars"]')
        assert "PROJECTED" not in local and "MEASURED" not in local  # the scales never mix
    cells = {uid: page.page.inner_text(f'#board tr[data-uid="{uid}"] td[data-key="aies_stars"]') for uid in page.board_uids()}
    assert cells["0:c-h100"].endswith("MEASURED") and "★" in cells["0:c-h100"]
    assert cells["0:c-enc"] == "none"
    assert all(t.startswith("PROJECTED ") for u, t in cells.items() if runs[u]["aies_status"] == "projected")
    for uid in ("0:c-h100", "0:c-enc", "0:c-off"):  # each run's section: the line `joulescore show` prints
        page.page.evaluate(f"location.hash = 'run={uid}'")
        line = page.page.locator(f'#run .run-section[data-uid="{uid}"] .aies-line')
        line.wait_for()
        detail = report[1]["details"][uid]["aies"]
        assert line.inner_text() == detail["line"] and line.get_attribute("data-status") == detail["status"]


def test_live_traffic_shows_the_summary_and_the_chart(opened: Opened, report: tuple[Path, dict[str, Any]]) -> None:
    (traffic,) = report[1]["traffic"]
    section = opened.page.locator("#traffic-list .traffic")
    assert section.count() == 1 and opened.page.locator('#nav a[href="#traffic"]').count() == 1
    rows = section.locator("tbody tr")
    assert rows.count() == len(traffic["models"])
    text = section.inner_text()
    for m in traffic["models"]:
        assert m["model"] in text and f"{m['p50_j']:.4g}" in text and f"{m['p90_j']:.4g}" in text
    assert XSS in text and section.locator("img").count() == 0 and opened.dialogs == []  # the name stays text
    assert "MEASURED" in text and "−10% / +10%" in text and f"idle share of all energy: {100 * traffic['idle_share']:.3g} %" in text
    plotted = opened.page.evaluate("document.querySelector('#traffic-list .js-plotly-plot').data.map(t => t.y.length)")
    assert sum(plotted) == traffic["requests"]
    assert opened.page.locator("#traffic-list .js-plotly-plot path.point").count() == traffic["requests"]
    assert opened.console == []
