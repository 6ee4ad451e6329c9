"""The chip figures the floor and projections need, from the shipped tables or the user.

Accelerator figures are published ones.  CPU vendors publish no peak FLOP/s, so
a CPU's peak is derived from published parts (cores x all-core clock x FP32
FLOP per cycle per core, each cited in cpus.csv) and always carried as derived.
A figure that is neither published nor derivable is reported as missing; nothing is guessed.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from joulescore.errors import BadInput
from joulescore.reference import as_float, load_table
from joulescore.textfile import read_csv

_PEAK_COLUMNS = (("peak_dense_bf16_tflops", "dense BF16"), ("peak_dense_fp8_tflops", "dense FP8"),
                 ("peak_int8_tops", "dense INT8 (ops)"))


@dataclass(frozen=True)
class ChipSpec:
    """Peak figures of one chip.  None means "not in the table"."""

    name: str
    tdp_w: float | None
    peak_flops: float | None  # FLOP/s (the most favourable published dense figure)
    peak_basis: str
    mem_bw_bps: float | None  # bytes/s
    source: str
    kind: str = "accelerator"  # accelerator | cpu | user
    peak_derivation: str | None = None  # how a derived (not published) peak was computed; None = published
    matched_by: str | None = None  # how a run's CPU was matched to this row ("model name", "microarchitecture ...")

    @property
    def flop_per_j(self) -> float | None:
        return self.peak_flops / self.tdp_w if self.peak_flops and self.tdp_w else None

    @property
    def bytes_per_j(self) -> float | None:
        return self.mem_bw_bps / self.tdp_w if self.mem_bw_bps and self.tdp_w else None

    def missing(self) -> list[str]:
        """The figures the table lacks for this chip."""
        names = []
        if not self.tdp_w:
            names.append("TDP")
        if not self.peak_flops:
            names.append("peak FLOP/s")
        if not self.mem_bw_bps:
            names.append("memory bandwidth")
        return names

    def with_overrides(self, tdp_w: float | None = None, peak_tflops: float | None = None,
                       mem_bw_gbs: float | None = None) -> ChipSpec:
        if tdp_w is None and peak_tflops is None and mem_bw_gbs is None:
            return self
        return replace(
            self,
            tdp_w=tdp_w if tdp_w is not None else self.tdp_w,
            peak_flops=peak_tflops * 1e12 if peak_tflops is not None else self.peak_flops,
            peak_basis="user-given" if peak_tflops is not None else self.peak_basis,
            peak_derivation=None if peak_tflops is not None else self.peak_derivation,
            mem_bw_bps=mem_bw_gbs * 1e9 if mem_bw_gbs is not None else self.mem_bw_bps,
            source=f"{self.source} ; overridden by the user",
        )


def _accelerator_spec(row: dict[str, str]) -> ChipSpec:
    best, basis = None, ""
    for column, label in _PEAK_COLUMNS:
        value = as_float(row.get(column))
        if value is not None and (best is None or value > best):
            best, basis = value, label
    bw = as_float(row.get("memory_bw_gbs"))
    return ChipSpec(
        name=row["name"],
        tdp_w=as_float(row.get("tdp_w")),
        peak_flops=best * 1e12 if best is not None else None,
        peak_basis=basis,
        mem_bw_bps=bw * 1e9 if bw is not None else None,
        source=row.get("source", ""),
    )


def accelerator_rows(path: Path | None = None) -> tuple[dict[str, str], ...]:
    """The shipped accelerators table, or the user's file with the same columns."""
    if path is None:
        return load_table("accelerators")
    rows = tuple(read_csv(path, "accelerator file"))
    need = {"name", "tdp_w", "memory_bw_gbs", "peak_dense_bf16_tflops"}
    if not rows or not need <= set(rows[0]):
        raise BadInput(f"accelerator file {path} needs the columns {', '.join(sorted(need))}")
    numeric = ("tdp_w", "memory_bw_gbs", *(c for c, _ in _PEAK_COLUMNS))
    for line, row in enumerate(rows, start=2):
        if not (row.get("name") or "").strip():
            raise BadInput(f"accelerator file {path}: line {line}: the name is empty")
        for column in numeric:
            try:
                as_float(row.get(column))
            except ValueError:
                raise BadInput(f"accelerator file {path}: line {line}: {column} {row.get(column)!r} "
                               f"is not a number") from None
    return rows


def accelerators(path: Path | None = None) -> list[ChipSpec]:
    return [_accelerator_spec(r) for r in accelerator_rows(path)]


#: Bare family names mean the SXM part, as ML.ENERGY and the AI Energy Score use;
#: say "H100 PCIe" or "H100 NVL" for the others.
FAMILY_DEFAULTS = {
    "a100": "NVIDIA A100 SXM4 80GB",
    "h100": "NVIDIA H100 SXM5 80GB",
    "h200": "NVIDIA H200 SXM 141GB",
}


def _words(name: str) -> list[str]:
    return re.split(r"[\s(),/]+", name.lower())


def find_accelerator(query: str, path: Path | None = None) -> ChipSpec:
    """One accelerator by name.

    Exact name, else every word of the query a substring of one row's name;
    several rows: the one with the query as a whole word, else the family
    default (``FAMILY_DEFAULTS``); still several or none: a one-line error
    naming the candidates.
    """
    chips = accelerators(path)
    q = " ".join(query.lower().split())
    if not q:
        raise BadInput("empty accelerator name")
    exact = [c for c in chips if c.name.lower() == q]
    if exact:
        return exact[0]
    tokens = q.split()
    hits = [c for c in chips if all(t in c.name.lower() for t in tokens)]
    if len(hits) > 1:
        whole = [c for c in hits if all(t in _words(c.name) for t in tokens)]
        if len(whole) == 1:
            return whole[0]
        default = FAMILY_DEFAULTS.get(q)
        if path is None and default and any(c.name == default for c in hits):
            return next(c for c in hits if c.name == default)
        raise BadInput(f"accelerator {query!r} is ambiguous: {'; '.join(c.name for c in hits)}")
    if hits:
        return hits[0]
    close = difflib.get_close_matches(q, [c.name.lower() for c in chips], n=4, cutoff=0.3)
    by_lower = {c.name.lower(): c.name for c in chips}
    hint = f"; close: {'; '.join(by_lower[c] for c in close)}" if close else ""
    raise BadInput(f"unknown accelerator {query!r}{hint} (see `joulescore project --list`)")


def cpu_spec(cpu: str | None, microarchitecture: str | None) -> ChipSpec | None:
    """The cpus-table row for this CPU (by model name, else microarchitecture), or None.

    A VM that reports only "AMD EPYC" is matched by its microarchitecture to the
    first row of that family (e.g. Zen 5 (Turin) -> EPYC 9755); ``matched_by`` says so.
    """
    rows = load_table("cpus")
    text = (cpu or "").lower()
    row = next((r for r in rows if r["name"].lower() in text), None)
    how = "model name"
    if row is None and microarchitecture:
        row = next((r for r in rows if r["microarchitecture"].lower() == microarchitecture.lower()), None)
        how = f"microarchitecture {microarchitecture} (the first table row of that family; the model is not known)"
    if row is None:
        return None
    return replace(_cpu_row_spec(row), matched_by=how)


def derived_cpu_peak(row: dict[str, str]) -> tuple[float, str] | None:
    """Peak FP32 FLOP/s = cores x clock x FP32 FLOP/cycle/core, and the derivation; None where a part is missing.

    The clock is the all-core boost where the vendor publishes one, else the max boost: both are at
    or above what all cores sustain at TDP, so the peak is high and the floor stays a lower bound.
    """
    cores, clock = as_float(row.get("cores")), as_float(row.get("peak_clock_ghz"))
    per_cycle = as_float(row.get("fp32_flop_per_cycle_per_core"))
    if not (cores and clock and per_cycle and (row.get("peak_derivation_source") or "").strip()):
        return None
    peak = cores * clock * 1e9 * per_cycle
    basis = row.get("peak_clock_basis") or "clock"
    text = (f"derived from cores x clock x FLOP/cycle, not a published figure: {cores:g} cores x {clock:g} GHz "
            f"({basis}) x {per_cycle:g} FP32 FLOP/cycle/core = {peak / 1e12:.3g} TFLOP/s")
    return peak, text


def _cpu_row_spec(row: dict[str, str]) -> ChipSpec:
    bw = as_float(row.get("mem_bw_per_socket_gbs"))
    derived = derived_cpu_peak(row)
    source = row.get("source", "")
    if derived:
        source = f"{source} ; peak: {row['peak_derivation_source']}"
    return ChipSpec(name=row["name"], tdp_w=as_float(row.get("tdp_w")),
                    peak_flops=derived[0] if derived else None, peak_basis="FP32 FMA, derived" if derived else "",
                    mem_bw_bps=bw * 1e9 if bw is not None else None, source=source, kind="cpu",
                    peak_derivation=derived[1] if derived else None)


def find_target(query: str, path: Path | None = None) -> ChipSpec:
    """A projection target: an accelerator (see ``find_accelerator``), else a CPU whose cpus.csv name
    holds every word of the query (``EPYC 9654``, ``Xeon 8480+``); neither: the accelerator error."""
    try:
        return find_accelerator(query, path)
    except BadInput as exc:
        tokens = query.lower().split()
        hits = [r for r in load_table("cpus") if tokens and all(t in r["name"].lower() for t in tokens)]
        if len(hits) == 1:
            return _cpu_row_spec(hits[0])
        if len(hits) > 1:
            raise BadInput(f"target {query!r} is ambiguous: {'; '.join(r['name'] for r in hits)}") from None
        raise BadInput(f"{exc} (CPU targets: `joulescore project --list`)") from None
