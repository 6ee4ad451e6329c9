"""What ``compare`` reads of a run: its record and its per-prompt figures, from a database or a run.json.

A run.json carries the per-prompt figures in its ``per_prompt`` section (written beside the record), so a
baseline committed to a repository can still be compared prompt by prompt.  A run.json without it (written
by an older joulescore) is refused: its per-prompt figures are gone, and a comparison of two means alone
would have no interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.store.rows import ResultRow
from joulescore.store.sqlite import Store
from joulescore.tasks.metrics import Response, score

#: metrics that are a mean of a per-prompt score, so a paired difference of quality has an interval
PER_PROMPT_METRICS = ("length", "final_number", "rouge_l", "squad_v2", "label_accuracy")


def prompt_scores(metric: str, results: Sequence[ResultRow]) -> list[float | None] | None:
    """Each answered prompt's own score under the task's metric (None for a failed prompt); None for a metric
    that is not a mean over prompts (Spearman)."""
    if metric not in PER_PROMPT_METRICS:
        return None
    out: list[float | None] = []
    for r in results:
        text = r.extra.get("answer", r.text) if "reasoning" in r.extra else r.text
        value = score(metric, [Response(text, r.output_tokens, r.extra.get("reference"),
                                        r.extra.get("row", {}))]).value if r.ok else None
        out.append(value)
    return out


def per_prompt_section(metric: str, results: Sequence[ResultRow]) -> dict[str, Any]:
    """The per-prompt figures a run.json carries, as columns (short to write, quick to read)."""
    return {
        "prompt_id": [r.prompt_id for r in results],
        "ok": [r.ok for r in results],
        "energy_j": [round(r.energy_j, 6) for r in results],
        "prefill_j": [round(r.prefill_j, 6) for r in results],
        "decode_j": [round(r.decode_j, 6) for r in results],
        "output_tokens": [r.output_tokens for r in results],
        "gpu_j": [round(float(r.domains["gpu"]), 6) for r in results] if all("gpu" in r.domains for r in results)
        and results else None,
        "latency_s": [round(float(r.extra.get("latency_s", r.duration_s)), 6) for r in results],
        "score": prompt_scores(metric, results),
    }


@dataclass
class RunData:
    """One run as compare sees it: its record and its prompts' figures, in prompt order."""

    record: RunRecord
    source: str
    prompt_id: list[str]
    columns: dict[str, np.ndarray]
    #: per-prompt score under the task's metric (NaN for a failed prompt); None where the metric has none
    score: np.ndarray | None

    @property
    def prompts_sha256(self) -> str | None:
        return self.record.task.prompts_sha256


def _arrays(section: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    columns = {name: np.asarray(section[name], dtype=float)
               for name in ("ok", "energy_j", "prefill_j", "decode_j", "output_tokens", "latency_s")}
    if section.get("gpu_j") is not None:
        columns["gpu_j"] = np.asarray(section["gpu_j"], dtype=float)
    raw = section.get("score")
    scores = None if raw is None else np.asarray([np.nan if v is None else v for v in raw], dtype=float)
    return columns, scores


def from_store(store: Store, run_id: str) -> RunData:
    """A stored run, rebuilt from its rows (so a run still answering is seen as it stands)."""
    record = store.record(run_id)
    results = store.results(run_id)
    columns, scores = _arrays(per_prompt_section(record.task.metric, results))
    return RunData(record, f"{run_id} in {store.path}", [r.prompt_id for r in results], columns, scores)


def from_file(path: Path) -> RunData:
    """A run.json: the record and its ``per_prompt`` section; anything else is a one-line error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read {path} as a run.json: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a run.json (no run record in it)")
    section = data.pop("per_prompt", None)
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadInput(f"{path} is not a run.json: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if not isinstance(section, dict) or not isinstance(section.get("energy_j"), list):
        raise BadInput(f"{path} has no per-prompt figures (written by an older joulescore); rerun it, or "
                       f"compare its run id in the database that holds it")
    try:
        columns, scores = _arrays(section)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{path}: its per_prompt section is damaged ({exc})") from None
    return RunData(record, str(path), [str(p) for p in section.get("prompt_id", [])], columns, scores)


def load(ref: str, store: Store | None) -> RunData:
    """A run named by its id (in ``store``) or by a run.json's path."""
    path = Path(ref).expanduser()
    if path.is_file() or ref.endswith(".json"):
        if not path.is_file():
            raise BadInput(f"no run.json at {path}")
        return from_file(path)
    if store is None:
        raise BadInput(f"{ref!r} is not a file, and there is no results database to look it up in")
    return from_store(store, ref)


def load_group(refs: str, store: Store | None) -> list[RunData]:
    """``ID``, ``FILE`` or a comma-separated group of them (the repeats of one setting)."""
    names = [r.strip() for r in refs.split(",") if r.strip()]
    if not names:
        raise BadInput("give a run id, a run.json, or a comma-separated group of them")
    return [load(name, store) for name in names]
