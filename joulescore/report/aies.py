"""Where a run lands on the published AI Energy Score scale: a second, labelled view beside local stars.

The scale is the leaderboard's own (``ai_energy_score.csv``): per task, and per size class for text
generation, its GPU-energy range is cut into five equal bands; the lowest band is 5 stars.  A run gets:

- **comparable**: a complete run whose GPU was measured on an H100 or H200, under the ``energy-score``
  protocol, on a task the leaderboard has: its GPU Wh per 1,000 queries on the published bands;
- **projected**: any other run, through the projection model onto one H100 (chip-only); the stars
  span the projection's band, and the line always says PROJECTED;
- **none**: one line saying why (no published table for the task, no projection for the run).

Published figures come from the leaderboard's prompts, not ours: docs/methodology.md says what that changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, Literal

from joulescore.backends import engine_of
from joulescore.errors import BadInput
from joulescore.model.record import RunRecord
from joulescore.reference import as_float, load_table
from joulescore.report.board import size_class, stars_text
from joulescore.units import J_PER_WH

Status = Literal["comparable", "projected", "none"]
#: the chips the leaderboard measures on (H100) and the one we accept beside it, always stated (H200)
COMPARABLE_GPUS = ("H100", "H200")
PROTOCOL = "energy-score"
BANDS = 5


@dataclass(frozen=True)
class Published:
    """One model's row on the leaderboard."""

    model: str
    wh_per_1000: float
    stars: int
    source: str


@dataclass(frozen=True)
class Band:
    stars: int
    low_wh: float
    high_wh: float


@dataclass(frozen=True)
class Scale:
    """One leaderboard's models for one task (and size class), lowest energy first, with its bands."""

    version: str
    aies_task: str
    task: str
    size_class: str
    rows: tuple[Published, ...]
    bands: tuple[Band, ...]

    @property
    def title(self) -> str:
        cls = f", class {self.size_class}" if self.size_class else ""
        return f"AI Energy Score {self.version} {self.aies_task.replace('_', ' ')}{cls}"

    def stars_for(self, wh: float) -> int:
        return band_stars(self.bands, wh)

    def neighbours(self, wh: float) -> tuple[Published | None, Published | None, int]:
        """The published model just below and just above ``wh``, and the rank ``wh`` would take (1 = lowest)."""
        below = [r for r in self.rows if r.wh_per_1000 <= wh]
        above = [r for r in self.rows if r.wh_per_1000 > wh]
        return (below[-1] if below else None), (above[0] if above else None), len(below) + 1


def derive_bands(energies: Sequence[float]) -> tuple[Band, ...]:
    """The leaderboard's rule: [min, max] cut into five equal sections, the lowest is 5 stars."""
    lo, hi = min(energies), max(energies)
    width = (hi - lo) / BANDS
    return tuple(Band(BANDS - i, lo + i * width, hi if i == BANDS - 1 else lo + (i + 1) * width)
                 for i in range(BANDS))


def band_stars(bands: Sequence[Band], wh: float) -> int:
    """Stars of ``wh`` on ``bands``: a band holds its low edge, the top band its high edge too.

    Below the lowest published figure is 5 stars, above the highest is 1: the scale does not stretch.
    """
    ordered = sorted(bands, key=lambda b: b.low_wh)
    for band in ordered[:-1]:
        if wh < band.high_wh:
            return band.stars
    return ordered[-1].stars


def stars_range_text(low: int, high: int) -> str:
    if low == high:
        return f"{stars_text(low)} {low}/5"
    return f"{stars_text(low)}-{stars_text(high)} {low}-{high}/5"


@cache
def task_facts() -> dict[str, dict[str, str]]:
    """The leaderboard's task facts, by joulescore task."""
    return {r["joulescore_task"]: r for r in load_table("ai_energy_score_tasks")}


@cache
def scales() -> dict[tuple[str, str], Scale]:
    """Every shipped scale, by (joulescore task, size class; "" where the task has no classes)."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in load_table("ai_energy_score"):
        groups.setdefault((r["joulescore_task"], r["size_class"]), []).append(r)
    bands: dict[tuple[str, str], list[Band]] = {}
    for b in load_table("ai_energy_score_bands"):
        bands.setdefault((b["joulescore_task"], b["size_class"]), []).append(
            Band(int(b["stars"]), float(b["low_wh_per_1000_queries"]), float(b["high_wh_per_1000_queries"])))
    out = {}
    for key, rows in groups.items():
        published = sorted((Published(r["model"], float(r["gpu_wh_per_1000_queries"]), int(r["stars"]), r["source"])
                            for r in rows), key=lambda p: p.wh_per_1000)
        out[key] = Scale(rows[0]["leaderboard_version"], rows[0]["aies_task"], key[0], key[1], tuple(published),
                         tuple(sorted(bands[key], key=lambda b: -b.stars)))
    return out


@dataclass
class AiesView:
    """The AI Energy Score line of one run, and the figures behind it."""

    status: Status
    line: str
    scale: str | None = None
    gpu_wh_per_1000_queries: float | None = None
    low_wh_per_1000_queries: float | None = None
    high_wh_per_1000_queries: float | None = None
    stars_low: int | None = None
    stars_high: int | None = None
    between: list[str | None] = field(default_factory=list)
    rank: int | None = None
    of: int | None = None
    hardware: str | None = None
    input_tokens_per_query: float | None = None
    output_tokens_per_query: float | None = None
    leaderboard_input_tokens_per_query: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tokens(record: RunRecord) -> tuple[float | None, float | None]:
    n = record.counts.succeeded
    return (record.counts.input_tokens / n, record.counts.output_tokens / n) if n else (None, None)


def _comparable_gpu(record: RunRecord) -> str | None:
    """The H100/H200 whose energy this run measured, or None."""
    gpus = record.hardware.gpus
    per = (record.meter.per_domain or {}).get("gpu") or {}
    measured = per.get("kind") == "measured" or (record.meter.kind == "measured" and "gpu" in record.meter.domains)
    names = {g.name or "" for g in gpus}
    if not gpus or not measured or record.gpu_wh_per_1000_queries is None or len(names) != 1:
        return None
    name = names.pop()
    return name if any(c in name.upper() for c in COMPARABLE_GPUS) else None


def _projected_h100(record: RunRecord) -> tuple[float, float, float] | str:
    """(low, central, high) H100 GPU Wh per 1,000 queries from the projection model, or why there is none."""
    from joulescore.impact import projection
    from joulescore.impact.hardware_specs import find_accelerator
    from joulescore.impact.summary import chip_for_floor

    engine = engine_of(record.model.backend)
    if engine is not None and engine.kind == "encoder":
        return "no projection for an encoder model: the projection model is built on decoder LLM runs"
    try:
        chip, name = chip_for_floor(record, None, None, None)
        target = projection.project(record, [find_accelerator("H100")], chip, name, None)["targets"][0]
    except BadInput as exc:
        return f"no projection: {exc}"
    if not target.get("available"):
        return f"no projection onto H100: {target.get('reason', 'not available')}"
    per_1000 = 1000 / J_PER_WH
    return (target["low_j_per_query"] * per_1000, target["central_j_per_query"] * per_1000,
            target["high_j_per_query"] * per_1000)


def _place(view: AiesView, scale: Scale, central: float, low: float, high: float) -> None:
    below, above, rank = scale.neighbours(central)
    view.scale = scale.title
    view.gpu_wh_per_1000_queries, view.low_wh_per_1000_queries, view.high_wh_per_1000_queries = central, low, high
    view.stars_low, view.stars_high = scale.stars_for(high), scale.stars_for(low)
    view.between = [below.model if below else None, above.model if above else None]
    view.rank, view.of = rank, len(scale.rows) + 1


def _where(view: AiesView) -> str:
    below, above = view.between  # names only: the figures are on `board --scale aies`
    if below and above:
        return f"between {below} and {above}"
    return f"below every published model (lowest: {above})" if above else f"above every published model ({below})"


def aies_view(record: RunRecord) -> AiesView:
    """The run's place on the AI Energy Score, comparable, projected or none, with the tokens beside it."""
    task = record.task.name
    facts = task_facts().get(task)
    tin, tout = _tokens(record)
    lb_in = as_float(facts["input_tokens_per_1000_queries"]) if facts else None
    view = AiesView("none", "", input_tokens_per_query=tin, output_tokens_per_query=tout,
                    leaderboard_input_tokens_per_query=lb_in / 1000 if lb_in else None)
    tokens = (f"{tin:.0f} in / {tout:.0f} out tokens per query here, {view.leaderboard_input_tokens_per_query:.0f} in "
              "on the leaderboard's prompts" if tin is not None and tout is not None and lb_in else "")
    if record.status != "complete":
        view.line = f"no AI Energy Score: the run is {record.status}, only complete runs are placed"
        return view
    if record.interference is not None and record.interference.disturbed:
        view.line = (f"no AI Energy Score: the run was DISTURBED ({record.interference.reason}); "
                     "a disturbed run is never starred")
        return view
    cls = size_class(record.model.extra.get("size_bytes"), record.model.parameters) or ""
    scale = scales().get((task, cls)) or scales().get((task, ""))
    if scale is None:
        known = sorted({t for t, _ in scales()})
        why = (f"the leaderboard publishes {facts['aies_task']} only in {facts['leaderboard_versions']}, "
               f"whose table is not shipped (no verifiable copy)" if facts else
               f"the leaderboard has no table for task {task!r} (shipped: {', '.join(known)})")
        if facts and cls and any(t == task for t, _ in scales()):
            why = f"no published {facts['aies_task']} rows for size class {cls}"
        view.line = f"no AI Energy Score: {why}"
        return view
    gpu = _comparable_gpu(record)
    protocol = record.config.get("protocol")
    if gpu and protocol == PROTOCOL:
        wh = float(record.gpu_wh_per_1000_queries or 0.0)
        _place(view, scale, wh, wh, wh)
        view.status, view.hardware = "comparable", gpu
        n = len(record.hardware.gpus)
        view.line = (f"{stars_range_text(view.stars_low or 0, view.stars_high or 0)} on {scale.title}: {_where(view)} "
                     f"(rank {view.rank} of {view.of}); MEASURED GPU-only {wh:.3g} Wh/1,000 queries on "
                     f"{gpu}{f' x{n}' if n > 1 else ''}{'' if 'H100' in gpu.upper() else ' (not the H100 it publishes)'}"
                     f"; {tokens}")
        return view
    projected = _projected_h100(record)
    why_not = ("its GPU energy was not measured on an H100/H200" if not gpu
               else f"protocol {protocol}, not {PROTOCOL}")
    if isinstance(projected, str):
        view.line = f"no AI Energy Score: {why_not}, and {projected}"
        return view
    low, central, high = projected
    _place(view, scale, central, low, high)
    view.status, view.hardware = "projected", "H100 (projected)"
    view.notes.append(f"not comparable as measured: {why_not}")
    view.line = (f"PROJECTED {stars_range_text(view.stars_low or 0, view.stars_high or 0)} on {scale.title}: "
                 f"H100 GPU {central:.3g} Wh/1,000 queries (band {low:.3g}-{high:.3g}), {_where(view)}; "
                 f"not a measurement ({why_not}); {tokens}")
    return view


def board_rows(records: Iterable[RunRecord], task: str | None = None) -> list[dict[str, Any]]:
    """``board --scale aies``: the published rows of each task by class, with the stored runs placed among them."""
    runs = [r for r in records if r.status == "complete" and (task is None or r.task.name == task)]
    views = [(r, aies_view(r)) for r in runs]
    out: list[dict[str, Any]] = []
    for scale in sorted(scales().values(), key=lambda s: (s.task, s.size_class)):
        if task is not None and scale.task != task:
            continue
        rows = [{"task": scale.task, "scale": scale.title, "model": p.model, "wh_per_1000": p.wh_per_1000,
                 "low_wh": None, "high_wh": None, "stars": stars_text(p.stars), "mark": "published",
                 "run_or_source": p.source} for p in scale.rows]
        for rec, v in views:
            if v.scale != scale.title or v.gpu_wh_per_1000_queries is None:
                continue
            rows.append({"task": scale.task, "scale": scale.title, "model": rec.model.name,
                         "wh_per_1000": v.gpu_wh_per_1000_queries, "low_wh": v.low_wh_per_1000_queries,
                         "high_wh": v.high_wh_per_1000_queries,
                         "stars": stars_range_text(v.stars_low or 0, v.stars_high or 0).split(" ")[0],
                         "mark": "MEASURED" if v.status == "comparable" else "PROJECTED",
                         "run_or_source": rec.run_id})
        out.extend(sorted(rows, key=lambda r: r["wh_per_1000"]))
    for rec, v in views:
        if v.status == "none":
            out.append({"task": rec.task.name, "scale": None, "model": rec.model.name, "wh_per_1000": None,
                        "low_wh": None, "high_wh": None, "stars": "-", "mark": v.line,
                        "run_or_source": rec.run_id})
    return out


def bands_table() -> list[dict[str, str]]:
    """The bands of every shipped scale, derived from its rows by the leaderboard's rule."""
    groups: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
    for r in load_table("ai_energy_score"):
        groups.setdefault((r["leaderboard_version"], r["aies_task"], r["joulescore_task"], r["size_class"]),
                          []).append(r)
    out = []
    for (version, aies, task, cls), rows in groups.items():
        for b in derive_bands([float(r["gpu_wh_per_1000_queries"]) for r in rows]):
            n = sum(1 for r in rows if int(r["stars"]) == b.stars)
            out.append({"leaderboard_version": version, "aies_task": aies, "joulescore_task": task,
                        "size_class": cls, "stars": str(b.stars), "low_wh_per_1000_queries": f"{b.low_wh:.12g}",
                        "high_wh_per_1000_queries": f"{b.high_wh:.12g}", "models": str(n),
                        "source": ("derived from ai_energy_score.csv by the leaderboard's rule (five equal sections "
                                   "of [min, max], lowest = 5 stars): huggingface/AIEnergyScore:index.md@"
                                   "a5b9a048ecd44aa087cdd5b575a17d705128c424")})
    return out


if __name__ == "__main__":  # regenerate the shipped bands: python -m joulescore.report.aies
    import csv
    from pathlib import Path

    target = Path(__file__).resolve().parents[1] / "reference" / "data" / "ai_energy_score_bands.csv"
    rows = bands_table()
    with target.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {target}")
