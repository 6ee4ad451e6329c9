"""PROJECTIONS of a measured run onto other accelerators, and the platform power table.

Nothing here is measured.  For a target chip T and each phase p:

    floor_T,p   = the roofline floor of the run's own tokens on T (see floor.py)
    central_T,p = floor_T,p / eta_p
    low_T,p     = floor_T,p / eta_high      high_T,p = floor_T,p / eta_low

eta (the share of the roofline achieved) is the run's own measured efficiency
when its chip has published figures (the measured phase energy scaled by the
compute ratio for prefill and the memory ratio for decode); otherwise the
median of the ML.ENERGY v3 best configurations in the shipped table.  The band
spans the lowest to highest efficiency in that table (and the run's own).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from joulescore.impact.floor import Workload, floor_report, phase_floors, workload
from joulescore.impact.hardware_specs import ChipSpec, find_accelerator
from joulescore.model.record import RunRecord
from joulescore.reference import as_float, load_table

_BYTES = {"bfloat16": 2.0, "fp8": 1.0, "mxfp4": 4.25 / 8}  # MXFP4: 4 bits + one 8-bit scale per 32
_TEXT_TASKS = ("gpqa", "lm-arena-chat", "sourcegraph-fim")


@dataclass(frozen=True)
class EfficiencyBand:
    low: float
    central: float
    high: float
    basis: str


@lru_cache(maxsize=1)
def reference_efficiency() -> EfficiencyBand:
    """Share of the roofline floor that ML.ENERGY v3's best LLM configurations reached.

    Per row: floor per output token = max(2 x active params / (FLOP/J), weight bytes / batch / (B/J))
    on that GPU; efficiency = floor / measured energy per output token (GPU-only, prefill included).
    """
    effs = []
    for row in load_table("mlenergy_v3_best_configs"):
        if row["task"] not in _TEXT_TASKS or row["weight_precision"] not in _BYTES:
            continue
        chip = find_accelerator(row["gpu"])
        active, total = as_float(row["active_params_b"]), as_float(row["total_params_b"])
        batch, measured = as_float(row["batch"]), as_float(row["energy_per_token_j"])
        if not (active and total and batch and measured and chip.flop_per_j and chip.bytes_per_j):
            continue
        floor = max(2 * active * 1e9 / chip.flop_per_j,
                    total * 1e9 * _BYTES[row["weight_precision"]] / batch / chip.bytes_per_j)
        effs.append(min(1.0, floor / measured))
    return EfficiencyBand(min(effs), statistics.median(effs), max(effs),
                          f"ML.ENERGY v3 best configs, {len(effs)} LLM rows on H100/B200 (GPU-only, best batch)")


def project(record: RunRecord, targets: list[ChipSpec], source: ChipSpec | None = None,
            source_name: str | None = None, active_params: float | None = None) -> dict[str, Any]:
    """Each target's projected energy per phase and per query, with low/high bounds.

    ``active_params`` stands in for the model's parameter count where the run does not record one
    (a served model) or where only some parameters are active per token (a mixture of experts).
    """
    w: Workload = workload(record, active_params)  # first: a bad or missing count is the error, not a side note
    here = floor_report(record, source, hardware_name=source_name, active_params=active_params)
    ref = reference_efficiency()
    own: dict[str, float] = {}
    if here["available"]:
        for phase, entry in here["phases"].items():
            if entry.get("efficiency"):
                own[phase] = entry["efficiency"]
    queries = max(1, w.queries)
    energy = record.energy
    rows = []
    for chip in targets:
        floors = phase_floors(w, chip)
        if floors is None:
            rows.append({"accelerator": chip.name, "available": False,
                         "reason": f"{', '.join(chip.missing())} not in the table"})
            continue
        phases: dict[str, Any] = {}
        totals = {"floor_j": 0.0, "low_j": 0.0, "central_j": 0.0, "high_j": 0.0}
        for phase, f in floors.items():
            eta = own.get(phase, ref.central)
            hi_eta = max(ref.high, eta)
            lo_eta = min(ref.low, eta)
            entry = {"floor_j": f.floor_j, "bound": f.bound, "efficiency_used": eta,
                     "low_j": f.floor_j / hi_eta, "central_j": f.floor_j / eta, "high_j": f.floor_j / lo_eta}
            phases[phase] = entry
            for k in totals:
                totals[k] += entry[k]
        rows.append({
            "accelerator": chip.name, "available": True, "tdp_w": chip.tdp_w,
            "peak_tflops": chip.peak_flops / 1e12 if chip.peak_flops else None, "peak_basis": chip.peak_basis,
            "mem_bw_gbs": chip.mem_bw_bps / 1e9 if chip.mem_bw_bps else None,
            "phases": phases,
            **{k.replace("_j", "_j_per_query"): v / queries for k, v in totals.items()},
            "central_j_per_output_token": totals["central_j"] / w.output_tokens if w.output_tokens else None,
            "source": chip.source,
        })
    return {
        "kind": "PROJECTION",
        "run_id": record.run_id,
        "measured": {"hardware": here["hardware"], "meter_kind": here["meter_kind"],
                     "j_per_query": energy.total_j / queries if energy.total_j else None,
                     "prefill_j": energy.prefill_j, "decode_j": energy.decode_j,
                     "floor_available": here["available"], "floor_reason": here.get("reason")},
        "efficiency": {"own": own or None, "reference": ref.__dict__},
        "workload": {"queries": w.queries, "input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                     "batch_size": w.batch_size, "parameters": w.parameters, "weight_bytes": w.weight_bytes},
        "targets": rows,
    }


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
