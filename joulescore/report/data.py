"""The report's data: every figure the HTML page shows, taken from the typed run records.

The page only lays these figures out; it computes nothing but filters, sorts and
grey-outs.  Several databases merge into one report: each run keeps its origin
(the database file it came from), and its key on the page is ``ORIGIN#:RUN_ID`` so
that two machines' runs never collide.  Stars and the Pareto frontier are the
board's own rules (:mod:`joulescore.report.board`), applied over the merged runs,
so a team's machines are rated against each other within each peer group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from joulescore.model.record import RunRecord
from joulescore.report.aies import AiesView, aies_view, stars_range_text
from joulescore.report.board import BoardRow, Rule, pareto, rate, reference_rows, row_from_record
from joulescore.store.requests import RequestStore
from joulescore.units import J_PER_WH, energy_mark


@dataclass
class Origin:
    """One database of the report, and the complete records read from it."""

    index: int
    path: Path
    store: RequestStore
    records: list[RunRecord]

    def uid(self, run_id: str) -> str:
        return f"{self.index}:{run_id}"


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.expanduser().stat()
    except OSError:
        return None  # missing: the store says so in its own words
    return st.st_dev, st.st_ino


def open_origins(paths: list[Path], notes: list[str] | None = None) -> list[Origin]:
    """Each ``--db`` opened read-only and read; a path with no database is a one-line error, not a new file.

    Each run counts once however it is named: a database given twice (the same path, ``./`` before it,
    a symlink or a hard link: one file by device and inode) is read once, and a run already read from
    an earlier ``--db`` (a copy of the file, or a file merged from it) is left out of the later ones:
    the same run id with the same start time, model and machine is the same run.  Counted twice, it would add peers and
    make up stars.  ``notes`` gets one line for each thing left out.
    """
    origins: list[Origin] = []
    files: dict[tuple[int, int], Path] = {}
    runs: dict[tuple[str, ...], Path] = {}
    for path in paths:
        file_id = _file_id(path)
        if file_id in files:
            _note(notes, f"--db {path} is {files[file_id]} again: read once")
            continue
        store = RequestStore(path, readonly=True)  # the runs, and the requests the proxy metered beside them
        if file_id is not None:
            files[file_id] = path
        records, seen = [], 0
        for record in store.records():
            key = (record.run_id, record.created_at, record.model.name, record.hardware.cpu, record.hardware.machine)
            if key in runs:
                seen += 1
                continue
            runs[key] = path
            records.append(record)
        if seen:
            _note(notes, f"{seen} of the runs in --db {path} were already read from an earlier --db: counted once")
        origins.append(Origin(len(origins), store.path, store, records))
    return origins


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None:
        notes.append(text)


def interference_view(record: RunRecord) -> dict[str, Any]:
    """The DISTURBED mark and the 95% interval on J/query, where the record carries them (issue 12).

    A record without an ``interference`` or ``interval`` section (stored before they existed) shows
    no mark, and the meter's band instead of an interval.
    """
    it, iv = record.interference, record.interval
    reason = "" if it is None else it.reason if it.reason is not None else "; ".join(it.reasons)
    return {"disturbed": it is not None and it.disturbed, "reason": reason,
            "j_per_query_ci95": [iv.j_per_query_low, iv.j_per_query_high] if iv is not None else None}


def precision_of(record: RunRecord) -> str:
    """dtype and quantization as the engine ran them (GGUF type, --dtype, --quantization)."""
    engine = record.config.get("engine") or {}
    parts = [str(p) for p in (record.model.quantization, engine.get("dtype"), engine.get("quantization")) if p]
    return " / ".join(dict.fromkeys(parts)) or "-"


def reasoning_mode(record: RunRecord) -> str:
    plan = record.reasoning_plan()
    return plan.mode if plan is not None else "none"


def wh_band(record: RunRecord, ci: list[float] | None) -> tuple[float | None, float | None, str]:
    """Wh/1,000 queries low and high: the 95% interval (J/query) where the record has one, else the meter's band."""
    n = record.counts.succeeded
    if ci is not None:
        return ci[0] * 1000 / J_PER_WH, ci[1] * 1000 / J_PER_WH, "95% interval"
    if not n:
        return None, None, ""
    per = 1000 / J_PER_WH / n
    return record.energy.low_j * per, record.energy.high_j * per, "meter band"


def kind_label(record: RunRecord) -> str:
    """MEASURED / ESTIMATED / MIXED, with the meter's stated band."""
    pct = record.meter.uncertainty_pct
    return energy_mark(record.meter.kind) + (f" ±{pct:g}%" if pct is not None else " (no band stated)")


def aies_cell(view: AiesView) -> dict[str, Any]:
    """The leaderboard's AI Energy Score column: stars or a range, PROJECTED said in the cell itself.

    A column of its own: the published scale never mixes with the local peer stars."""
    stars = stars_range_text(view.stars_low or 0, view.stars_high or 0) if view.stars_low is not None else None
    text = {"comparable": f"{stars} MEASURED", "projected": f"PROJECTED {stars}"}.get(view.status, "none")
    return {"aies": text, "aies_status": view.status, "aies_stars": view.stars_low, "aies_line": view.line,
            "aies_scale": view.scale}


def run_row(origin: Origin, record: RunRecord, board: BoardRow, intf: dict[str, Any]) -> dict[str, Any]:
    """One leaderboard line of a run: the record's figures, rated by the board's rules."""
    lo, hi, band = wh_band(record, intf["j_per_query_ci95"])
    return {
        "uid": origin.uid(record.run_id), "run_id": record.run_id, "origin": str(origin.path), "task": board.task,
        "model": record.model.name, "engine": record.model.backend, "precision": precision_of(record),
        "batch": record.batching.batch_size, "hardware": board.hardware, "hardware_class": board.hardware_class,
        "size_class": board.size_class or "?", "kind": record.meter.kind, "kind_label": kind_label(record),
        "wh": record.wh_per_1000_queries, "wh_low": lo, "wh_high": hi, "band": band,
        "j_per_token": record.j_per_output_token, "j_per_query": record.j_per_query,
        "prefill_pct": record.phase_split.prefill_pct, "decode_pct": record.phase_split.decode_pct,
        "quality_metric": record.quality.metric, "quality": record.quality.value,
        "higher_is_better": record.quality.higher_is_better, "stars": board.stars, "stars_note": board.stars_note,
        "pareto": board.pareto, "peer_group": " / ".join(board.peer_key()), "date": record.created_at[:10],
        "p90_latency_s": record.latency.e2e_s.p90, "reasoning": reasoning_mode(record),
        "disturbed": intf["disturbed"], "disturbed_reason": intf["reason"], "protocol": board.protocol,
        "prompts": record.counts.succeeded, "sweep": record.sweep.id if record.sweep else None,
    }


def reference_row(row: BoardRow) -> dict[str, Any]:
    """A published figure beside the runs: labelled with its source, never rated."""
    return {"task": row.task, "model": row.model, "hardware": row.hardware, "wh": row.wh_per_1000,
            "j_per_token": row.j_per_token, "source": row.source, "protocol": row.protocol,
            "citation": row.citation, "published_task": row.published_task,
            "note": row.stars_note}


def leaderboard(origins: list[Origin], task: str | None, rule: Rule, intf: dict[str, dict[str, Any]],
                aies: dict[str, AiesView]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runs (complete ones, rated and placed on the frontier) and the reference rows, per task.

    ``intf`` and ``aies``: each run's :func:`interference_view` and :func:`aies_view` by its uid, filled here."""
    by_uid: dict[str, tuple[Origin, RunRecord]] = {}
    rows = []
    for origin in origins:
        for record in origin.records:
            if record.status != "complete" or (task is not None and record.task.name != task):
                continue
            uid = origin.uid(record.run_id)
            by_uid[uid] = (origin, record)
            intf[uid] = interference_view(record)
            aies[uid] = aies_view(record)
            row = row_from_record(record)
            rows.append(replace(row, run_id=uid))  # the board's rules key runs by run_id: unique across origins
    rated = pareto(rate(rows, rule))
    runs = [run_row(*by_uid[b.run_id or ""], b, intf[b.run_id or ""]) | aies_cell(aies[b.run_id or ""])
            for b in rated]
    runs.sort(key=lambda r: (r["task"], r["wh"] if r["wh"] is not None else float("inf")))
    tasks = sorted({r["task"] for r in runs} | ({task} if task else set()))
    refs = [reference_row(r) for t in tasks for r in reference_rows(t)]
    return runs, refs
