"""PROJECTIONS of a measured run onto other chips, and the platform power table.

Nothing here is measured.  GPU targets use the two-regime model of ``latency_model``: per phase the
larger of the roofline energy (scaled by the share of it that engines reach) and busy power x the
latency-bound time (steps x a per-layer step-time floor), both fitted to published GPU measurements
that state their batch.  CPU targets (cpus.csv) get the roofline at TDP (compute term from a derived
peak where the row has one, no step floor), with a band that says it is not fitted on CPU measurements.  See docs/impact.md.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from joulescore.errors import BadInput
from joulescore.impact.floor import Workload, floor_report, workload
from joulescore.impact.footprint import it_energy
from joulescore.impact.hardware_specs import ChipSpec, find_target
from joulescore.impact.latency_model import BACKEND_ENGINE, Case, Fit, phases, predict, shipped_fit
from joulescore.model.record import RunRecord
from joulescore.reference import as_float, load_table


def layers_from_params(parameters: float) -> float:
    """Layer count estimated from the parameter count (log-log fit over model_shapes.csv), for runs without one."""
    rows = [(float(r["total_params_b"]), float(r["layers"])) for r in load_table("model_shapes")]
    slope, intercept = np.polyfit(np.log([n for n, _ in rows]), np.log([n for _, n in rows]), 1)
    return float(math.exp(intercept + slope * math.log(parameters / 1e9)))


def run_case(record: RunRecord, w: Workload, chip: ChipSpec, batch: int | None = None) -> tuple[Case, dict[str, Any]]:
    """The run's work per query as a model Case on ``chip``, and what was assumed to build it."""
    if batch is not None and batch < 1:
        raise BadInput(f"--batch must be 1 or more, got {batch}")
    queries = max(1, w.queries)
    total = float(record.model.parameters or w.parameters)
    layers = float(w.kv.layers) if w.kv else layers_from_params(total)
    engine = BACKEND_ENGINE.get(str(record.model.backend).lower(), "unknown")
    case = Case(active_params=w.parameters, total_params=max(total, w.parameters), weight_bytes=w.weight_bytes,
                layers=layers, input_tokens=w.input_tokens / queries, output_tokens=w.output_tokens / queries,
                batch=float(batch or w.batch_size), engine=engine, chip=chip, kv_bytes_per_step=w.kv_bytes_per_step)
    assumed = {"batch": int(case.batch), "batch_from": "--batch" if batch else "the run", "engine": engine,
               "layers": layers, "layers_from": "the GGUF header" if w.kv else "estimated from the parameter count"}
    return case, assumed


def _gpu_target(case: Case, fit: Fit) -> dict[str, Any]:
    p = predict(case, fit)
    scale_lo, scale_hi = p["low_j"] / p["central_j"], p["high_j"] / p["central_j"]
    ph = {name: {**e, "low_j": e["central_j"] * scale_lo, "high_j": e["central_j"] * scale_hi}
          for name, e in p["phases"].items()}
    note = None if case.engine in fit.eta else (
        f"engine {case.engine}: no published GPU rows; the band spans the fitted vLLM and eager-PyTorch engines")
    return {"floor_j": p["floor_j"], "low_j": p["low_j"], "central_j": p["central_j"], "high_j": p["high_j"],
            "phases": ph, "model": "two-regime (fitted on GPU rows)", "note": note}


def _cpu_target(case: Case, fit: Fit, own_eta: float | None) -> dict[str, Any]:
    """Roofline at TDP over an efficiency band; no CPU rows are fitted, so the band is wide."""
    etas = list(fit.eta.values())
    central_eta = own_eta or math.exp(sum(math.log(e) for e in etas) / len(etas))
    ph_floor = phases(case, 1.0, 0.0)
    k = 10 ** fit.band_log10
    lo_eta, hi_eta = max(central_eta, max(etas)), min(central_eta, min(etas))
    ph: dict[str, dict[str, Any]] = {name: {"roofline_j": e.roofline_j, "latency_j": None, "central_j": e.roofline_j / central_eta,
                 "low_j": e.roofline_j / lo_eta, "high_j": e.roofline_j / hi_eta * k, "regime": "throughput-bound"}
          for name, e in ph_floor.items()}
    total = {key: sum(float(e[key]) for e in ph.values()) for key in ("roofline_j", "low_j", "central_j", "high_j")}
    return {"floor_j": total["roofline_j"], "low_j": total["low_j"], "central_j": total["central_j"],
            "high_j": total["high_j"], "phases": ph, "model": "roofline at TDP (not fitted on CPU rows)",
            "note": "CPU: no published CPU rows with batch are fitted; no per-step floor; "
                    + ("the compute term uses a peak FLOP/s derived from cores x clock x FLOP/cycle, not a published "
                       "figure; " if case.chip.peak_derivation else "no compute term (no peak FLOP/s in cpus.csv); ")
                    + "the band borrows the GPU efficiencies, widened by the GPU fit's spread"}


def project(record: RunRecord, targets: list[ChipSpec], source: ChipSpec | None = None,
            source_name: str | None = None, active_params: float | None = None, *,
            batch: int | None = None) -> dict[str, Any]:
    """Each target's projected energy per phase and per query, with low/high bounds and the regime.

    ``active_params`` stands in for the model's parameter count where the run does not record one
    (a served model) or where only some parameters are active per token (a mixture of experts).
    ``batch`` projects at another batch size than the run's.
    """
    if record.media is not None:  # a speech or image model has no token phases to scale: not guessed
        raise BadInput(f"no model for this task: the projection scales text generation (prefill and decode of "
                       f"tokens), and task {record.task.name} reads {record.media.inputs} files")
    it_energy(record)  # what ``impact`` refuses (no answered query with energy) has nothing to project from
    w: Workload = workload(record, active_params)  # first: a bad or missing count is the error, not a side note
    here = floor_report(record, source, hardware_name=source_name, active_params=active_params)
    cpu_run = "gpu" not in " ".join(record.meter.includes).lower()
    own_eta = here.get("efficiency") if here["available"] and cpu_run else None  # a CPU run's own share, for CPU targets
    fit = shipped_fit()
    queries = max(1, w.queries)
    rows = []
    assumed: dict[str, Any] = {}
    for chip in targets:
        if not chip.tdp_w or not chip.mem_bw_bps or (chip.kind != "cpu" and not chip.peak_flops):
            missing = [m for m in chip.missing() if chip.kind != "cpu" or m != "peak FLOP/s"]  # CPUs need no peak
            rows.append({"accelerator": chip.name, "kind": chip.kind, "available": False,
                         "reason": f"{', '.join(missing)} not in the table"})
            continue
        case, assumed = run_case(record, w, chip, batch)
        est = _cpu_target(case, fit, own_eta) if chip.kind == "cpu" else _gpu_target(case, fit)
        rows.append({
            "accelerator": chip.name, "kind": chip.kind, "available": True, "tdp_w": chip.tdp_w,
            "peak_tflops": chip.peak_flops / 1e12 if chip.peak_flops else None, "peak_basis": chip.peak_basis,
            "mem_bw_gbs": chip.mem_bw_bps / 1e9, "assumed_batch": int(case.batch), "engine": case.engine,
            "phases": est["phases"], "model": est["model"], "note": est["note"],
            **{f"{k}_per_query": est[f"{k}"] for k in ("floor_j", "low_j", "central_j", "high_j")},
            "central_j_per_output_token": est["central_j"] * queries / w.output_tokens if w.output_tokens else None,
            "source": chip.source,
        })
    energy = record.energy
    return {
        "kind": "PROJECTION",
        "run_id": record.run_id,
        "measured": {"hardware": here["hardware"], "meter_kind": here["meter_kind"],
                     "j_per_query": energy.total_j / queries if energy.total_j else None,
                     "prefill_j": energy.prefill_j, "decode_j": energy.decode_j,
                     "floor_available": here["available"], "floor_reason": here.get("reason"),
                     "floor": {k: here.get(k) for k in ("available", "partial", "reason", "table_row", "matched_by",
                                                        "phases", "efficiency")}
                              | {"chip": {"peak_derived": bool((here.get("chip") or {}).get("peak_derived"))}}},
        "fit": {"eta": {k: float(v) for k, v in fit.eta.items()},
                "step_floor_ms_per_layer": {k: fit.tau_s(k) * 1e3 for k in fit.floor_w},
                "busy_power_fraction_of_tdp": fit.power_fraction, "band_factor": 10 ** fit.band_log10,
                "rows": fit.rows, "basis": "projection_reference.csv: ML.ENERGY v3 batch 8/16 (vLLM) and "
                                          "AI Energy Score v1 text generation (transformers, batch 1), GPU-only"},
        "assumed": assumed or None,
        "workload": {"queries": w.queries, "input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                     "batch_size": w.batch_size, "parameters": w.parameters, "weight_bytes": w.weight_bytes},
        "targets": rows,
    }


def project_one(record: RunRecord, target: str, batch: int | None = None,
                active_params: float | None = None) -> dict[str, Any]:
    """One target's projection row by name (accelerators.csv or cpus.csv), e.g. ``project_one(r, "H100")``."""
    return project(record, [find_target(target)], active_params=active_params, batch=batch)["targets"][0]


def _packages(row: dict[str, str]) -> float | None:
    basis = row["gpu_count_basis"]
    m = re.search(r"(\d+)\s*packages", basis)
    if m:
        return float(m.group(1))
    if basis.startswith("GPU packages"):
        return as_float(row["gpus_per_unit"])
    return None


def generations() -> dict[str, Any]:
    """NVIDIA platform power from Ampere to Kyber, with growth against the first (DGX A100)."""
    rows = load_table("platforms")
    base = rows[0]
    base_unit = as_float(base["unit_power_kw"])
    base_pkgs = _packages(base)
    base_pkg = base_unit / base_pkgs if base_unit and base_pkgs else None
    out = []
    for row in rows:
        unit = as_float(row["unit_power_kw"])
        pkgs = _packages(row)
        per_pkg = unit / pkgs if unit and pkgs else None
        out.append({
            "platform": row["platform"], "generation": row["gpu_generation"], "year": row["year"],
            "unit_power_kw": unit, "unit_power_kw_range": row["unit_power_kw_range"] or None,
            "gpu_packages": pkgs, "kw_per_package": per_pkg,
            "unit_growth": unit / base_unit if unit and base_unit else None,
            "package_growth": per_pkg / base_pkg if per_pkg and base_pkg else None,
            "source": row["source"],
        })
    return {
        "baseline": base["platform"],
        "rows": out,
        "caveat": ("unit growth compares an 8-GPU server (DGX A100, 6.5 kW) with whole racks (Kyber NVL576, "
                   "600 kW): about 92x per unit, but only about 5x per GPU package (0.81 kW incl. CPUs/NICs -> "
                   "~4.2 kW); NVL144/NVL576 count dies (2 or 4 per package). Rows without a settled figure show "
                   "the reported range and no factor."),
    }
