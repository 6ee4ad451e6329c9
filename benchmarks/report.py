"""The report at scale: 2,000 stored runs, how long writing the page takes, its size, and Chromium's load.

The runs are synthetic (no model runs): each is written through the store API as
``joulescore run`` writes one (its spec, one row per prompt, then the record rebuilt
from the rows), over the six tasks, four hardware classes, three engines and both
meter kinds, so the report does all of its real work.  Timed:

- **write**: ``build_report_data`` + ``write_report`` in this process (records read,
  stars, frontier, per-prompt series, impact, sweeps; the HTML written);
- **cli**: the same through ``joulescore report`` in a fresh process (imports included);
- **leaderboard interactive**: Chromium's clock from navigation start until the page
  script has drawn the leaderboard and bound its controls (``window.joulescoreReady``);
- **charts drawn**: until plotly is evaluated and every chart is drawn (``joulescoreChartsReady``);
- **sort click**: one click on a column header until the table is redrawn.

    python benchmarks/report.py [--runs 2000] [--prompts 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from joulescore.report.html import write_report
from joulescore.report.page import build_report_data
from joulescore.store.sqlite import Store

# The synthetic run writer is a test helper (tests/synthetic.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.synthetic import SyntheticRun, store_run

TASKS = ("chat", "reasoning", "summarization", "extractive-qa", "sentiment", "sentence-similarity")
HARDWARE = (("Intel Xeon (Emerald Rapids)", "Emerald Rapids", []), ("AMD EPYC (Genoa)", "Genoa", []),
            ("Intel Xeon (Sapphire Rapids)", "Sapphire Rapids", [{"name": "NVIDIA H100 80GB HBM3"}]),
            ("AMD EPYC (Milan)", "Milan", [{"name": "NVIDIA A100-SXM4-40GB"}] * 2))
ENGINES = ("llama.cpp", "transformers", "onnxruntime")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def fill(db: Path, runs: int, prompts: int) -> None:
    rng = random.Random(0)
    with Store(db) as store:
        for i in range(runs):
            cpu, micro, gpus = HARDWARE[i % len(HARDWARE)]
            base = rng.uniform(0.5, 20.0)
            store_run(store, SyntheticRun(
                run_id=f"run-{i:05d}", model=f"model-{i % 97}", task=TASKS[i % len(TASKS)],
                energy_j=[base * rng.uniform(0.7, 1.3) for _ in range(prompts)],
                correct=[rng.random() < 0.6 for _ in range(prompts)],
                input_tokens=[rng.randint(20, 400) for _ in range(prompts)],
                seconds=[rng.uniform(0.2, 2.0) for _ in range(prompts)], backend=ENGINES[i % len(ENGINES)],
                kind="measured" if gpus else "estimated", uncertainty_pct=5.0 if gpus else 30.0,
                cpu=cpu, microarchitecture=micro, gpus=gpus))


def browser_times(path: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("JOULESCORE_CHROMIUM") or shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(path.as_uri())
        while page.evaluate("window.joulescoreChartsReady") is None:  # polled from here: the page's CSP refuses eval
            time.sleep(0.05)
        ready = page.evaluate("[window.joulescoreReady, window.joulescoreChartsReady]")
        rows = page.evaluate("document.querySelectorAll('#board tbody tr').length")
        sort_ms = page.evaluate("""() => { const t = performance.now();
            document.querySelector('#board th[data-key="j_per_token"]').click(); return performance.now() - t; }""")
        browser.close()
    return {"ready_ms": ready[0], "charts_ms": ready[1], "sort_ms": sort_ms, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="keep the database and report in this folder")
    ap.add_argument("--reuse", action="store_true", help="with --keep: use the database already there")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="joulescore-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    db, html = folder / "runs.db", folder / "report.html"
    t0 = time.perf_counter()
    if not (args.reuse and db.exists()):
        db.unlink(missing_ok=True)
        fill(db, args.runs, args.prompts)
    fill_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    data = build_report_data([db])
    write_report(data, html)
    write_s, write_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "joulescore.cli", "report", "--db", str(db), "-o", str(folder / "cli.html")],
                   check=True, capture_output=True)
    cli_s = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu_s = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    size_mb = html.stat().st_size / 1e6
    web = browser_times(html)
    table = Table(title=f"joulescore report over {args.runs} stored runs x {args.prompts} prompts "
                  f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    table.add_row("fill the database (not timed against a target)", f"{fill_s:.1f} s", "")
    table.add_row("write: build data + write HTML (in process)", f"{write_s:.2f} s (CPU {write_cpu_s:.2f} s)", "< 5 s")
    table.add_row("write: `joulescore report` (fresh process)", f"{cli_s:.2f} s (CPU {cli_cpu_s:.2f} s)", "< 5 s")
    table.add_row("file size", f"{size_mb:.2f} MB", "< 10 MB")
    table.add_row("leaderboard interactive (Chromium)", f"{web['ready_ms'] / 1000:.2f} s", "< 2 s")
    table.add_row("charts drawn (plotly evaluated)", f"{web['charts_ms'] / 1000:.2f} s", "")
    table.add_row(f"sort click, {web['rows']} rows redrawn", f"{web['sort_ms']:.0f} ms", "")
    Console().print(table)
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
