"""An encoder generates no token, so all of its energy is prefill: a real MiniLM run (issue 23, round 3).

The runner used to take the phase boundary from the moment the encoder's one forward pass
called its first-token hook, so the few milliseconds between that call and the end of the
window were booked as decode (0.4-0.7% of a run).  A generation with no token has no decode phase.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import cli


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    db = tmp_path_factory.mktemp("encoder") / "results.db"
    proc = cli("run", "--backend", "encoder", "--model", "minilm-l6", "--task", "sentence-similarity", "--limit", "3",
               "--warmup", "0", "--no-progress", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    return db, json.loads(proc.stdout)


@pytest.mark.slow
def test_an_encoder_run_is_all_prefill(encoder_run: tuple[Path, dict[str, Any]]) -> None:
    _, record = encoder_run
    assert record["model"]["backend"] == "encoder" and record["counts"]["succeeded"] == 3
    assert record["counts"]["output_tokens"] == 0
    assert record["phase_split"] == {"prefill_pct": 100.0, "decode_pct": 0.0}
    assert record["energy"]["decode_j"] == 0.0 and record["energy"]["prefill_j"] == record["energy"]["total_j"] > 0


@pytest.mark.slow
def test_every_stored_encoder_prompt_has_no_decode_phase_and_the_report_says_all_prefill(
        encoder_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from joulescore.report.page import build_report_data

    db, record = encoder_run
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT prefill_s, decode_s, prefill_j, decode_j FROM results WHERE run_id=?",
                            (record["run_id"],)).fetchall()
    assert len(rows) == 3
    assert all(decode_s == 0.0 and decode_j == 0.0 and prefill_s > 0 and prefill_j > 0
               for prefill_s, decode_s, prefill_j, decode_j in rows)
    runs = build_report_data([db])["runs"]
    assert [(r["prefill_pct"], r["decode_pct"]) for r in runs] == [(100.0, 0.0)]
