"""The two-regime projection model, fitted to published GPU measurements that state their batch.

Per phase (prefill = one step, decode = output tokens - 1 steps), on a chip at batch B:

    roofline_j = steps x max(2 N_active / FLOP_per_J, (W_read / B + KV) / bytes_per_J)    (at TDP)
    latency_j  = steps x TDP x (power_fraction x tau_engine) x layers / B
    energy_j   = max(roofline_j / eta_engine, latency_j)

W_read = W x min(1, B x N_active / N_total) (a mixture of experts reads the experts its batch touches).
Fitted per engine on ``projection_reference.csv`` (least squares on log energy): eta (share of the
roofline reached when throughput-bound) and power_fraction x tau (the per-layer step-time floor at
busy power).  power_fraction is the median measured GPU power / TDP of the rows that publish power, so
tau = fitted product / power_fraction.  The band is the 90th percentile of |log10 residual|.  See
docs/impact.md for the validation and the limits.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from joulescore.impact.hardware_specs import ChipSpec, find_accelerator
from joulescore.reference import as_float, load_table

FITTED_ENGINES = ("vllm", "pytorch")
ENGINES = (*FITTED_ENGINES, "llama.cpp")
BACKEND_ENGINE = {"vllm": "vllm", "transformers": "pytorch", "pytorch": "pytorch", "llama.cpp": "llama.cpp"}
BYTES_PER_WEIGHT = {"bfloat16": 2.0, "fp8": 1.0, "mxfp4": 4.25 / 8}  # MXFP4: 4 bits + one 8-bit scale per 32
ONE_GPU_BYTES = 80e9  # rows whose weights exceed one H100's memory ran on several GPUs; their count is unpublished


@dataclass(frozen=True)
class Case:
    """One query's work on one chip: what the model needs to know."""

    active_params: float
    total_params: float
    weight_bytes: float
    layers: float
    input_tokens: float  # per query
    output_tokens: float  # per query
    batch: float
    engine: str
    chip: ChipSpec
    kv_bytes_per_step: float = 0.0


@dataclass(frozen=True)
class Fit:
    eta: dict[str, float]  # engine -> share of the roofline (throughput-bound)
    floor_w: dict[str, float]  # engine -> power_fraction x tau (s per layer-step at TDP)
    power_fraction: float
    band_log10: float  # half-width of the band, log10
    rows: int

    def tau_s(self, engine: str) -> float:
        """Per-layer step-time floor of an engine, in seconds."""
        return self.floor_w[engine] / self.power_fraction

    def for_engine(self, engine: str) -> list[tuple[str, float, float]]:
        """(label, eta, floor) to evaluate: one for a fitted engine, the fitted extremes for llama.cpp."""
        if engine in self.eta:
            return [(engine, self.eta[engine], self.floor_w[engine])]
        return [(e, self.eta[e], self.floor_w[e]) for e in FITTED_ENGINES]


@dataclass(frozen=True)
class PhaseEstimate:
    roofline_j: float
    latency_j: float
    energy_j: float

    @property
    def regime(self) -> str:
        return "latency-bound" if self.latency_j > self.energy_j * 0.999 else "throughput-bound"


def phases(case: Case, eta: float, floor_w: float) -> dict[str, PhaseEstimate]:
    """Energy of each phase of one query, in J."""
    chip = case.chip
    fpj, bpj, tdp = chip.flop_per_j, chip.bytes_per_j, chip.tdp_w
    assert bpj is not None and tdp is not None
    share = min(1.0, case.batch * case.active_params / case.total_params) if case.total_params else 1.0
    weights_per_query = case.weight_bytes * share / case.batch
    compute = (lambda tokens: 2 * case.active_params * tokens / fpj) if fpj else (lambda tokens: 0.0)
    step_latency_j = tdp * floor_w * case.layers / case.batch
    decode_steps = max(0.0, case.output_tokens - 1)
    out = {}
    for phase, steps, tokens, kv in (("prefill", 1.0, case.input_tokens, 0.0),
                                     ("decode", decode_steps, decode_steps, case.kv_bytes_per_step)):
        roof = max(compute(tokens), steps * (weights_per_query + kv) / bpj)
        lat = steps * step_latency_j
        out[phase] = PhaseEstimate(roof, lat, max(roof / eta, lat))
    return out


def energy_j(case: Case, eta: float, floor_w: float) -> float:
    return sum(p.energy_j for p in phases(case, eta, floor_w).values())


@dataclass(frozen=True)
class Row:
    """One published measurement as a Case with its measured energy per query."""

    case: Case
    measured_j: float
    power_w: float | None
    model: str
    label: str
    excluded: str | None = None


def _shapes() -> dict[str, dict[str, str]]:
    return {r["model"]: r for r in load_table("model_shapes")}


def reference_rows() -> list[Row]:
    """The shipped rows, each with why it is left out of the fit (or None)."""
    shapes = _shapes()
    chips: dict[str, ChipSpec] = {}
    rows = []
    for r in load_table("projection_reference"):
        shape = shapes.get(r["model"])
        chip = chips.setdefault(r["gpu"], find_accelerator(r["gpu"]))
        bytes_per = BYTES_PER_WEIGHT.get(r["weight_precision"])
        if shape is None or bytes_per is None:
            continue
        total = float(shape["total_params_b"]) * 1e9
        case = Case(active_params=float(shape["active_params_b"]) * 1e9, total_params=total,
                    weight_bytes=total * bytes_per, layers=float(shape["layers"]), input_tokens=0.0,
                    output_tokens=float(r["output_tokens"]), batch=float(r["batch"]), engine=r["engine"], chip=chip)
        excluded = None
        if case.weight_bytes > ONE_GPU_BYTES and not r["num_gpus"]:
            excluded = f"{case.weight_bytes / 1e9:.0f} GB of weights: several GPUs, count not published"
        label = f"{r['source_project'].split(' ')[0]} {r['model'].split('/')[-1]} {r['gpu']} b{r['batch']}"
        if "task" in r["notes"]:
            label += " " + r["notes"].split(";")[0].removeprefix("task ")
        rows.append(Row(case, float(r["energy_per_query_j"]), as_float(r["avg_power_w"]), r["model"], label,
                        excluded))
    return rows


def fit(rows: list[Row], start: Fit | None = None) -> Fit:
    """Fit eta and the floor per engine to rows (log least squares, robust to a few outliers).

    ``start`` (an earlier fit) replaces the several cold starts with one warm one: leave-one-out refits.
    """
    used = [r for r in rows if r.excluded is None and r.case.engine in FITTED_ENGINES]
    engines = [e for e in FITTED_ENGINES if any(r.case.engine == e for r in used)]
    if not engines:
        raise ValueError("no reference rows to fit")
    powers = [r.power_w / (r.case.chip.tdp_w or math.inf) for r in used if r.power_w]
    power_fraction = statistics.median(powers) if powers else 1.0
    index = {e: i for i, e in enumerate(engines)}
    measured = np.log10([r.measured_j for r in used])

    def unpack(x: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        return ({e: 10 ** x[2 * i] for e, i in index.items()}, {e: 10 ** x[2 * i + 1] for e, i in index.items()})

    def residuals(x: np.ndarray) -> np.ndarray:
        eta, floor = unpack(x)
        pred = [energy_j(r.case, eta[r.case.engine], floor[r.case.engine]) for r in used]
        return np.log10(pred) - measured

    best = None
    starts = [np.array([v for _ in engines for v in (-0.3, floor0)]) for floor0 in (-5.0, -4.0, -3.0)]
    if start is not None and all(e in start.eta for e in engines):
        starts = [np.log10([v for e in engines for v in (start.eta[e], start.floor_w[e])])]
    for x0 in starts:  # a few cold starts: the max() makes the surface piecewise
        lower = np.array([v for _ in engines for v in (-3.0, -9.0)])
        upper = np.array([v for _ in engines for v in (0.0, 0.0)])
        res = least_squares(residuals, x0, bounds=(lower, upper), loss="soft_l1", f_scale=0.1)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    eta, floor = unpack(best.x)
    band = float(np.quantile(np.abs(residuals(best.x)), 0.9))
    return Fit({e: float(v) for e, v in eta.items()}, {e: float(v) for e, v in floor.items()}, float(power_fraction),
               band, len(used))


@lru_cache(maxsize=1)
def shipped_fit() -> Fit:
    """The fit on every shipped reference row (done once per process, ~1 s)."""
    return fit(reference_rows())


def predict(case: Case, model: Fit) -> dict[str, Any]:
    """Central, low and high J/query with the regime of each phase, for one case."""
    options = model.for_engine(case.engine)
    runs = [(label, phases(case, eta, floor)) for label, eta, floor in options]
    totals = [sum(p.energy_j for p in ph.values()) for _, ph in runs]
    central = math.exp(statistics.fmean(math.log(t) for t in totals))
    k = 10 ** model.band_log10
    label, ph = runs[0]
    roofline = sum(p.roofline_j for p in ph.values())
    return {
        "central_j": central, "low_j": max(roofline, min(totals) / k), "high_j": max(totals) * k,
        "floor_j": roofline,
        "phases": {name: {"roofline_j": p.roofline_j, "latency_j": p.latency_j, "central_j": p.energy_j,
                          "regime": p.regime} for name, p in ph.items()},
        "engines_used": [lab for lab, _, _ in options],
    }

