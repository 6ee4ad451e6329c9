"""The two-regime projection model: it recovers known parameters, and its leave-one-out check is honest."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from joulescore.impact.hardware_specs import find_accelerator
from joulescore.impact.latency_model import Case, Row, energy_j, fit, reference_rows

ROOT = Path(__file__).resolve().parents[2]


def _hand_made_rows(eta: dict[str, float], floor_w: dict[str, float]) -> list[Row]:
    """Rows computed from known parameters: small and large models, batch 1 to 64, on two GPUs."""
    rows = []
    for gpu in ("H100", "B200"):
        chip = find_accelerator(gpu)
        for engine in ("vllm", "pytorch"):
            for params, layers in ((0.1e9, 12), (1e9, 24), (8e9, 32), (30e9, 60)):
                for batch in (1, 8, 64):
                    case = Case(params, params, 2 * params, layers, 100.0, 50.0, batch, engine, chip)
                    rows.append(Row(case, energy_j(case, eta[engine], floor_w[engine]), 0.6 * (chip.tdp_w or 0),
                                    "m", f"{gpu} {engine} {params:g} b{batch}"))
    return rows


def test_fit_recovers_known_parameters() -> None:
    eta, floor_w = {"vllm": 0.8, "pytorch": 0.4}, {"vllm": 2e-5, "pytorch": 1.5e-4}
    got = fit(_hand_made_rows(eta, floor_w))
    for engine in eta:
        assert got.eta[engine] == pytest.approx(eta[engine], rel=1e-3)
        assert got.floor_w[engine] == pytest.approx(floor_w[engine], rel=1e-3)
    assert got.power_fraction == pytest.approx(0.6)
    assert got.band_log10 < 1e-4  # noiseless rows: no spread
    assert got.tau_s("pytorch") == pytest.approx(1.5e-4 / 0.6)


def test_fit_band_grows_with_noise() -> None:
    rows = _hand_made_rows({"vllm": 0.8, "pytorch": 0.4}, {"vllm": 2e-5, "pytorch": 1.5e-4})
    noisy = [replace(r, measured_j=r.measured_j * (1.5 if i % 2 else 1 / 1.5)) for i, r in enumerate(rows)]
    assert fit(noisy).band_log10 > 0.1


def test_every_shipped_row_is_inside_its_band_or_listed_as_a_miss() -> None:
    r = subprocess.run([sys.executable, "benchmarks/projection_validation.py"], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    table = [ln for ln in lines if ln.endswith("  yes") or ln.endswith("  MISS")]
    fitted = [row for row in reference_rows() if row.excluded is None]
    assert len(table) == len(fitted)
    misses = next(ln for ln in lines if ln.startswith("misses ("))
    for ln in table:
        if ln.endswith("MISS"):
            assert ln.split("  ")[0] in misses
    left_out = [ln for ln in lines if ln.startswith("left out:")]
    assert len(left_out) == len(reference_rows()) - len(fitted)
    summary = next(ln for ln in lines if ln.startswith("LOO:"))
    inside = float(summary.split(",")[1].split("%")[0])
    median = float(summary.split("error| ")[1].split()[0])
    assert inside >= 80 and median < 0.3, summary
