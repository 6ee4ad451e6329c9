"""The board: stored runs ranked per task, with stars, peer groups and the Pareto frontier.

Pure functions over :class:`BoardRow` so the rules can be tested on fixed boards.

Rules (documented in docs/board.md):

- A **peer group** is (task, hardware class, protocol, model size class).  Stars
  only ever compare runs inside one peer group.
- **Size classes** follow the AI Energy Score: A fits one consumer GPU, B one
  cloud GPU, C needs several.  From the weights' bytes (else parameters x 2
  bytes, bf16): A <= 24 GB (a 24 GB consumer card), B <= 80 GB (an 80 GB
  H100/A100), C above.
- **equal-bins** (default, the AI Energy Score rule): the group's energy range
  (Wh/1,000 queries) is cut into five equal bins; the lowest bin gets 5 stars.
  **quintile**: runs ranked by energy, the lowest fifth gets 5 stars (ties share
  the better rank).
- A group with fewer than :data:`MIN_PEERS` runs gets no stars, and says so.
- A **disturbed** run (other processes, steal or throttling above the run's
  thresholds: ``record.interference``) is shown, marked, but never rated and
  never counted in its group's bins.  Nor is a **sampled** (``--precision``)
  run whose 95% interval is wider than the precision the board asks for
  (default :data:`DEFAULT_PRECISION_PCT`); a full run always may be rated.
- Reference rows (published figures) are shown, labelled with their source, and
  never rated: their protocol is their publisher's, so they share no peer group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from joulescore.model.record import RunRecord
from joulescore.reference import as_float, load_table
from joulescore.units import J_PER_WH

Rule = Literal["equal-bins", "quintile"]
RULES: tuple[str, ...] = ("equal-bins", "quintile")
MIN_PEERS = 5
#: the interval a sampled (--precision) run must be within to be rated: half-width as % of J/query
DEFAULT_PRECISION_PCT = 2.0
GB = 1e9
CLASS_A_MAX_BYTES = 24 * GB
CLASS_B_MAX_BYTES = 80 * GB

#: our task -> words in a published row's task that make it a fair reference for it
REFERENCE_TASKS: dict[str, tuple[str, ...]] = {
    "chat": ("lm-arena-chat", "text prompt", "chat query", "average query", "text generation"),
    "reasoning": ("gpqa", "reasoning"),
}


@dataclass(frozen=True)
class BoardRow:
    """One line of the board: a stored run, or a published reference figure."""

    model: str
    task: str
    wh_per_1000: float | None
    j_per_token: float | None
    quality: float | None
    quality_metric: str
    higher_is_better: bool | None
    hardware: str
    hardware_class: str
    protocol: str
    size_class: str | None
    kind: str  # measured, estimated, mixed, or published (reference rows)
    source: str = "joulescore"
    run_id: str | None = None
    date: str = ""
    stars: int | None = None
    stars_note: str = ""
    pareto: bool | None = None
    #: why the run was disturbed ("" when it was not): shown, never rated
    disturbed: str = ""
    #: a --precision run that stopped before the task's last prompt
    sampled: bool = False
    #: the 95% interval of wh_per_1000, and its half-width as % of the figure
    wh_per_1000_low: float | None = None
    wh_per_1000_high: float | None = None
    half_width_pct: float | None = None
    #: a published reference row only: its own task name and where it was published (not in ``as_dict``)
    published_task: str = field(default="", compare=False)
    citation: str = field(default="", compare=False)

    @property
    def is_reference(self) -> bool:
        return self.run_id is None

    def peer_key(self) -> tuple[str, str, str, str]:
        return (self.task, self.hardware_class, self.protocol, self.size_class or "?")

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("published_task", "citation")}
        d["peer_group"] = " / ".join(self.peer_key())
        return d


def size_class(size_bytes: float | None, parameters: float | None) -> str | None:
    """AI Energy Score model class from the weights' size (parameters x 2 bytes if unknown)."""
    size = size_bytes if size_bytes else (parameters * 2 if parameters else None)
    if size is None:
        return None
    return "A" if size <= CLASS_A_MAX_BYTES else "B" if size <= CLASS_B_MAX_BYTES else "C"


def row_from_record(record: RunRecord) -> BoardRow:
    """A stored run's record as a board row."""
    model, q, hw = record.model, record.quality, record.hardware
    it, iv = record.interference, record.interval
    return BoardRow(
        model=model.name, task=record.task.name, wh_per_1000=record.wh_per_1000_queries,
        j_per_token=record.j_per_output_token, quality=q.value,
        quality_metric=q.metric, higher_is_better=q.higher_is_better,
        hardware=hw.describe(),
        hardware_class=hw.hardware_class(), protocol=record.config["protocol"],
        size_class=size_class(model.extra.get("size_bytes"), model.parameters),
        kind=record.meter.kind, run_id=record.run_id, date=record.created_at[:10],
        disturbed=(it.reason or "disturbed") if it is not None and it.disturbed else "",
        sampled=bool(record.sampling and record.sampling.sampled),
        wh_per_1000_low=iv.wh_per_1000_queries_low if iv else None,
        wh_per_1000_high=iv.wh_per_1000_queries_high if iv else None,
        half_width_pct=iv.half_width_pct if iv else None,
    )


def _reference_wh_per_1000(row: dict[str, str]) -> float | None:
    metric, unit = row["metric"].lower(), row["unit"]
    value = as_float(row["value"])
    if value is None or "energy per" not in metric or unit not in ("J", "Wh"):
        return None
    if "1,000 queries" in metric:
        return value if unit == "Wh" else value / J_PER_WH
    if not any(w in metric for w in ("request", "query", "prompt")):
        return None
    return value * 1000 / (J_PER_WH if unit == "J" else 1.0)


def reference_rows(task: str) -> list[BoardRow]:
    """Published per-query energy figures that fit a task, each labelled with its source."""
    words = REFERENCE_TASKS.get(task, ())
    rows = []
    for r in load_table("reference_results"):
        wh = _reference_wh_per_1000(r)
        if wh is None or not any(w in r["task"].lower() for w in words):
            continue
        n = r.get("num_gpus") or ""
        hw = r["hardware"] + (f" x{n}" if n and n != "1" else "")
        rows.append(BoardRow(
            model=r["model"], task=task, wh_per_1000=wh, j_per_token=as_float(r.get("energy_per_token_j")),
            quality=None, quality_metric="", higher_is_better=None, hardware=hw,
            hardware_class=f"published: {hw}", protocol=f"{r['source_project']}: {r['metric']}",
            size_class=None, kind="published", source=r["source_project"],
            stars_note="reference figure, not rated (other protocol and boundary)",
            published_task=r["task"], citation=r["source"],
        ))
    return rows


def equal_bin_stars(energies: Sequence[float]) -> list[int]:
    """Five equal bins over [min, max]; the lowest-energy bin is 5 stars."""
    lo, hi = min(energies), max(energies)
    if hi == lo:
        return [5] * len(energies)
    width = (hi - lo) / 5
    return [5 - min(4, math.floor((e - lo) / width)) for e in energies]


def quintile_stars(energies: Sequence[float]) -> list[int]:
    """Rank by energy; each fifth of the ranking is one star level (ties share the better rank)."""
    ordered = sorted(energies)
    n = len(ordered)
    return [5 - min(4, ordered.index(e) * 5 // n) for e in energies]


def unrated_reason(row: BoardRow, precision_pct: float = DEFAULT_PRECISION_PCT) -> str | None:
    """Why a run may not be rated at all (nor set its group's bins), or None."""
    if row.disturbed:
        return f"DISTURBED, not rated: {row.disturbed}"
    if row.sampled and (row.half_width_pct is None or row.half_width_pct > precision_pct):
        shown = "unknown" if row.half_width_pct is None else f"+/-{row.half_width_pct:.2f}%"
        return (f"sampled rating, not rated: its 95% interval ({shown}) is wider than the board's "
                f"precision (+/-{precision_pct:g}%)")
    return None


def rate(rows: Iterable[BoardRow], rule: Rule = "equal-bins",
         precision_pct: float = DEFAULT_PRECISION_PCT) -> list[BoardRow]:
    """Stars for every run, computed inside its peer group; reference rows pass unrated.

    Disturbed runs, and sampled runs less precise than ``precision_pct``, are kept out of the groups.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rating rule {rule!r}; choose {' or '.join(RULES)}")
    stars_of = equal_bin_stars if rule == "equal-bins" else quintile_stars
    groups: dict[tuple[str, ...], list[BoardRow]] = defaultdict(list)
    out: list[BoardRow] = []
    for row in rows:
        unrated = None if row.is_reference else unrated_reason(row, precision_pct)
        if row.is_reference:
            out.append(row)
        elif unrated is not None:
            out.append(replace(row, stars=None, stars_note=unrated))
        elif row.wh_per_1000 is None:
            out.append(replace(row, stars=None, stars_note="no energy figure (no prompt succeeded)"))
        else:
            groups[row.peer_key()].append(row)
    for members in groups.values():
        if len(members) < MIN_PEERS:
            note = (f"no stars: peer group has {len(members)} run(s), stars need {MIN_PEERS} "
                    f"(same task, hardware class, protocol and size class)")
            out.extend(replace(m, stars=None, stars_note=note) for m in members)
            continue
        stars = stars_of([float(m.wh_per_1000 or 0.0) for m in members])  # grouped rows all have a figure
        note = f"{rule} over {len(members)} runs in peer group"
        out.extend(replace(m, stars=s, stars_note=note) for m, s in zip(members, stars))
    return out


def pareto(rows: Iterable[BoardRow]) -> list[BoardRow]:
    """Mark runs no peer beats on both energy (lower) and quality (better), per peer group.

    A run without an energy figure, a quality figure or a quality direction
    (chat's output length) is not placed: ``pareto`` stays None.
    """
    rows = list(rows)
    placed = [r for r in rows if not r.is_reference and r.wh_per_1000 is not None and not r.disturbed
              and r.quality is not None and r.higher_is_better is not None]

    def axes(r: BoardRow) -> tuple[float, float]:
        """(energy, quality as higher-is-better) of a placed row, whose figures are all set."""
        quality = float(r.quality or 0.0)
        return float(r.wh_per_1000 or 0.0), quality if r.higher_is_better else -quality

    def dominates(a: BoardRow, b: BoardRow) -> bool:
        (ea, qa), (eb, qb) = axes(a), axes(b)
        return ea <= eb and qa >= qb and (ea < eb or qa != qb)

    on_front = {id(r): not any(dominates(o, r) for o in placed if o is not r and o.peer_key() == r.peer_key())
                for r in placed}
    return [replace(r, pareto=on_front[id(r)]) if id(r) in on_front else r for r in rows]


def build_board(records: Iterable[RunRecord], task: str | None = None, rule: Rule = "equal-bins",
                with_pareto: bool = False, with_references: bool = True,
                precision_pct: float = DEFAULT_PRECISION_PCT) -> list[BoardRow]:
    """Ranked rows: per task, runs by energy (stars within peer groups), then the references."""
    runs = [row_from_record(r) for r in records if r.status == "complete"]
    if task is not None:
        runs = [r for r in runs if r.task == task]
    rows = rate(runs, rule, precision_pct)
    if with_pareto:
        rows = pareto(rows)
    if with_references:
        for name in sorted({task} if task else {r.task for r in runs}):
            rows.extend(reference_rows(name))
    return sorted(rows, key=lambda r: (r.task, r.is_reference, r.peer_key() if not r.is_reference else (),
                                       r.wh_per_1000 if r.wh_per_1000 is not None else math.inf))


def run_stars(record: RunRecord, stored: Iterable[RunRecord], rule: Rule = "equal-bins",
              precision_pct: float = DEFAULT_PRECISION_PCT) -> str:
    """The stars line of ``joulescore run``: this run rated among its stored peers."""
    if record.status != "complete":
        return f"no stars: the run is {record.status}, only complete runs are rated"
    me = row_from_record(record)
    peers = [row_from_record(r) for r in stored if r.status == "complete" and r.run_id != record.run_id]
    rated = rate([me, *[p for p in peers if p.task == me.task]], rule, precision_pct)
    return stars_line(next(r for r in rated if r.run_id == me.run_id))


def stars_text(stars: int | None) -> str:
    return "-" if stars is None else "★" * stars + "☆" * (5 - stars)


def stars_line(row: BoardRow) -> str:
    """One line for the run summary: the stars and the rule, or why there are none."""
    if row.stars is None:
        return row.stars_note
    return f"{stars_text(row.stars)} {row.stars}/5 ({row.stars_note}: {' / '.join(row.peer_key())})"
