"""The physical floor: the least energy the hardware could spend on a run's tokens.

A roofline at the chip's power limit (see docs/impact.md):

    prefill_floor = max(2 * N * input_tokens / (peak_FLOP/s / TDP),
                        queries * W / batch / (bandwidth / TDP))
    decode_floor  = max(2 * N * steps / (peak_FLOP/s / TDP),
                        steps * (W / batch + KV_bytes_per_step) / (bandwidth / TDP))

N = parameters (active), W = bytes of weights, steps = output tokens after the
first (the first comes out of prefill), KV_bytes_per_step = bytes per context
token x the mean context length during decode.  Each term is a lower bound on
its own, so the larger of the two is too.  Efficiency = floor / measured.

A CPU's peak FLOP/s is derived (cores x clock x FP32 FLOP/cycle, see
hardware_specs) and the report says so.  Prefill needs the peak FLOP/s and
decode the memory bandwidth: where only one is known, the phase it bounds gets
a floor and the other phase is reported missing; nothing is guessed.  A floor
above the measured figure means the hardware figures or the measurement's
boundary do not match this run; it is then reported as inconsistent, never as
>100 % efficiency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from joulescore.backends.gguf import KvShape, kv_shape
from joulescore.errors import BadInput
from joulescore.impact.hardware_specs import ChipSpec, cpu_spec, find_accelerator
from joulescore.model.record import RunRecord

# Bytes per weight for GGUF/llama.cpp quantization names, used only when the
# file size is unknown (block scales included, e.g. Q4_0 = 18 bytes / 32 weights).
_BYTES_PER_WEIGHT = {"F32": 4.0, "F16": 2.0, "BF16": 2.0, "Q8_0": 34 / 32, "Q4_0": 18 / 32,
                     "Q4_1": 20 / 32, "Q5_0": 22 / 32, "Q5_1": 24 / 32}


@dataclass(frozen=True)
class Workload:
    """The token counts and model figures of a run that the floor depends on."""

    parameters: float
    weight_bytes: float
    queries: int
    input_tokens: int
    output_tokens: int
    batch_size: int
    kv: KvShape | None

    @property
    def decode_steps(self) -> int:
        return max(0, self.output_tokens - self.queries)

    @property
    def kv_bytes_per_step(self) -> float:
        """KV bytes read per decode step: mean context length during decode x bytes per token."""
        if self.kv is None or not self.queries:
            return 0.0
        mean_out = self.output_tokens / self.queries
        mean_context = self.input_tokens / self.queries + mean_out / 2
        return self.kv.bytes_per_token * mean_context


def workload(record: RunRecord, active_params: float | None = None) -> Workload:
    """The run's token counts and model figures; ``active_params`` (--active-params) over the recorded count."""
    model, counts = record.model, record.counts
    if active_params is not None and not (math.isfinite(active_params) and active_params > 0):
        raise BadInput(f"--active-params must be a finite number above 0, got {active_params:g}")
    params = active_params or model.parameters
    if not params:
        raise BadInput(f"run {record.run_id} does not record the model's parameter count; "
                       "give --active-params (e.g. --active-params 7e9)")
    weight_bytes = model.extra.get("size_bytes")
    if not weight_bytes:
        quant = (str(model.quantization or "").upper().split() or [""])[0]
        per = _BYTES_PER_WEIGHT.get(quant)
        weight_bytes = params * per if per else params * 2.0
    batch = int(record.config.get("batch_size") or 1)
    return Workload(
        parameters=float(params),
        weight_bytes=float(weight_bytes),
        queries=counts.succeeded,
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        batch_size=max(1, batch),
        kv=kv_shape(model.path, model.architecture),
    )


@dataclass(frozen=True)
class PhaseFloor:
    """One phase's roofline terms; None where the chip lacks the figure (each term alone is a lower bound)."""

    compute_j: float | None
    memory_j: float | None

    @property
    def floor_j(self) -> float:
        return max(t for t in (self.compute_j, self.memory_j) if t is not None)

    @property
    def bound(self) -> str:
        if self.memory_j is None or (self.compute_j is not None and self.compute_j >= self.memory_j):
            return "compute"
        return "memory"


#: The figure without which a phase gets no floor: the term that bounds it in practice.
PHASE_NEEDS = {"prefill": "peak FLOP/s", "decode": "memory bandwidth"}


def phase_floors(w: Workload, chip: ChipSpec) -> dict[str, PhaseFloor | None]:
    """Floor energy of each phase on ``chip``; a phase is None where the chip lacks the figure it needs.

    Prefill needs the peak FLOP/s and decode the memory bandwidth; the other term joins where known.
    """
    fpj, bpj = chip.flop_per_j, chip.bytes_per_j
    weights_per_query = w.weight_bytes / w.batch_size

    def compute(tokens: float) -> float | None:
        return 2 * w.parameters * tokens / fpj if fpj else None

    def memory(nbytes: float) -> float | None:
        return nbytes / bpj if bpj else None

    prefill = PhaseFloor(compute(w.input_tokens), memory(w.queries * weights_per_query))
    decode = PhaseFloor(compute(w.decode_steps), memory(w.decode_steps * (weights_per_query + w.kv_bytes_per_step)))
    return {"prefill": prefill if fpj else None, "decode": decode if bpj else None}


def run_chip(record: RunRecord) -> tuple[ChipSpec | None, str]:
    """The chip that did the work in this run, as the tables know it, and what it is."""
    hw = record.hardware
    gpus = hw.gpus
    if gpus and "gpu" in " ".join(record.meter.includes).lower():
        name = gpus[0].name or ""
        # nvidia-smi says e.g. "NVIDIA H100 80GB HBM3": try the whole name, then each model-like word
        words = [name.replace("NVIDIA", "").strip()] + [t for t in name.split() if any(ch.isdigit() for ch in t)]
        for query in words:
            try:
                return find_accelerator(query), name
            except BadInput:
                continue
        return None, name
    return cpu_spec(hw.cpu, hw.cpu_microarchitecture), hw.cpu or "unknown CPU"


def _chip_notes(chip: ChipSpec) -> list[str]:
    """What the reader must know about the chip figures: a derived peak, a match by microarchitecture."""
    notes = []
    if chip.matched_by and chip.matched_by != "model name":
        notes.append(f"this CPU was matched by {chip.matched_by} to the table row {chip.name}: its figures stand "
                     "in for this machine's chip")
    if chip.peak_derivation:
        notes.append(f"peak FLOP/s {chip.peak_derivation}; it counts FP32 FMA arithmetic: INT8/BF16 dot-product "
                     "instructions (e.g. AVX-512 VNNI) do more operations per cycle, so a kernel using them could "
                     "spend less than this compute term")
    return notes


def _phase_entry(f: PhaseFloor | None, measured: float | None, phase: str) -> dict[str, Any]:
    if f is None:
        return {"floor_j": None, "bound": None, "compute_j": None, "memory_j": None, "measured_j": measured,
                "efficiency": None, "status": "missing", "missing": PHASE_NEEDS[phase]}
    entry: dict[str, Any] = {"floor_j": f.floor_j, "bound": f.bound, "compute_j": f.compute_j,
                             "memory_j": f.memory_j, "measured_j": measured, "efficiency": None}
    if measured is None or measured <= 0:
        entry["status"] = "no measurement"
    elif f.floor_j > measured:
        entry["status"] = "inconsistent"
        entry["computed_floor_j"] = entry.pop("floor_j")
        entry["floor_j"] = None
    else:
        entry["efficiency"] = f.floor_j / measured
        entry["status"] = "ok"
    return entry


def floor_report(record: RunRecord, chip: ChipSpec | None = None, *, hardware_name: str | None = None,
                 active_params: float | None = None) -> dict[str, Any]:
    """The floor section of a run: per phase floor, measured, efficiency; or why there is none."""
    if chip is None:
        chip, found_name = run_chip(record)
        hardware_name = hardware_name or found_name
    name = hardware_name or (chip.name if chip else "unknown")
    measured = {"prefill": record.energy.prefill_j, "decode": record.energy.decode_j}
    out: dict[str, Any] = {"hardware": name, "table_row": chip.name if chip else None,
                           "matched_by": chip.matched_by if chip else None, "meter_kind": record.meter.kind,
                           "available": False, "partial": False, "phases": {}, "notes": []}
    if chip is None:
        out["reason"] = f"{name} is not in the reference tables (accelerators.csv, cpus.csv)"
        return out
    missing = chip.missing()
    if not chip.tdp_w or (not chip.peak_flops and not chip.mem_bw_bps):
        have = f"TDP {chip.tdp_w:g} W" if chip.tdp_w else "no TDP"
        out["reason"] = (f"{chip.name}: {', '.join(missing)} not in the table ({have}); no floor without a "
                         "published or derived figure (give --peak-tflops/--mem-bw-gbs/--tdp-w to supply one)")
        return out
    try:
        w = workload(record, active_params)
    except BadInput as exc:
        out["reason"] = str(exc)
        return out
    floors = phase_floors(w, chip)
    out.update({
        "available": True,
        "partial": any(f is None for f in floors.values()),
        "chip": {"tdp_w": chip.tdp_w, "peak_tflops": chip.peak_flops / 1e12 if chip.peak_flops else None,
                 "peak_basis": chip.peak_basis, "peak_derived": chip.peak_derivation is not None,
                 "peak_derivation": chip.peak_derivation,
                 "mem_bw_gbs": chip.mem_bw_bps / 1e9 if chip.mem_bw_bps else None, "source": chip.source},
        "workload": {"parameters": w.parameters, "weight_bytes": w.weight_bytes, "batch_size": w.batch_size,
                     "input_tokens": w.input_tokens, "decode_steps": w.decode_steps,
                     "kv_bytes_per_token": w.kv.bytes_per_token if w.kv else None},
    })
    out["notes"].extend(_chip_notes(chip))
    for phase, f in floors.items():
        out["phases"][phase] = _phase_entry(f, measured[phase], phase)
        if f is None:
            other = next(p for p in floors if p != phase)
            out["notes"].append(f"the {phase} floor is missing: {chip.name} has no {PHASE_NEEDS[phase]} in the "
                                f"table, so only the {other} floor is given")
    if w.kv is None and floors["decode"] is not None:
        out["notes"].append("KV-cache reads left out (model shape unknown): the decode floor is lower than it could be")
    entries = out["phases"].values()
    consistent = all(e["status"] != "inconsistent" for e in entries)
    if not consistent:
        out["notes"].append("the computed floor is above the measured energy: the chip figures or the measurement's "
                            "boundary do not match this run (e.g. a small model's weights stay in the CPU's cache and are not "
                            "re-read from DRAM each step), so no efficiency is reported for that phase")
    complete = consistent and not out["partial"]
    total_floor = sum(e["floor_j"] for e in entries if e["floor_j"] is not None)
    total_measured = sum(e["measured_j"] for e in entries if e["measured_j"] and e["measured_j"] > 0)
    out["floor_j_per_output_token"] = total_floor / w.output_tokens if w.output_tokens and complete else None
    out["efficiency"] = total_floor / total_measured if complete and total_measured else None
    return out
