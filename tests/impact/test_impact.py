"""Impact: footprint, scale, regions, floor and projections, on hand-worked cases and real stored runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from joulescore import __version__
from joulescore.errors import BadInput
from joulescore.impact import footprint as fp
from joulescore.impact.floor import floor_report, workload
from joulescore.impact.hardware_specs import ChipSpec, find_accelerator
from joulescore.impact.projection import generations, project, project_one
from joulescore.impact.regions import find_region, load_regions
from joulescore.model.record import RunRecord
from joulescore.store.record import build_record
from joulescore.store.sqlite import ResultRow, Store

ROOT = Path(__file__).resolve().parents[2]


def _spec(gpus: list[dict[str, Any]] | None = None, includes: list[str] | None = None) -> dict[str, Any]:
    return {
        "config": {"model": "smollm2-135m", "task": "chat", "protocol": "energy-score", "max_new_tokens": 10,
                   "batch_size": 1, "warmup": 0},
        "model": {"name": "SmolLM2-135M-Instruct", "path": None, "backend": "llama.cpp", "quantization": "Q4_1",
                  "parameters": 134_515_008, "architecture": "llama", "context_length": 8192,
                  "extra": {"size_bytes": 98_000_000}},
        "task": {"name": "chat", "dataset": "chat.jsonl", "num_prompts": 4, "metric": "length"},
        "hardware": {"cpu": "Intel(R) Xeon(R) Processor (Emerald Rapids)", "cpu_microarchitecture": "Emerald Rapids",
                     "logical_cpus": 2, "ram_gb": 8.0, "gpus": gpus or []},
        "meter": {"kind": "estimated", "sources": ["estimator"], "includes": includes or ["cpu", "dram"],
                  "uncertainty_pct": 30.0, "notes": [], "domains": ["cpu", "dram"]},
    }


def make_run(db: Path, run_id: str = "run-a", prefill_j: float = 2.0, decode_j: float = 6.0,
             spec: dict[str, Any] | None = None) -> RunRecord:
    """A real SQLite store with 4 answered prompts: 40 input and 10 output tokens each."""
    with Store(db) as store:
        store.create_run(run_id, 4, spec or _spec())
        for i in range(4):
            total = prefill_j + decode_j
            store.add_result(run_id, ResultRow(
                prompt_index=i, prompt_id=f"p{i}", ok=True, error=None, finish_reason="length",
                input_tokens=40, output_tokens=10, prefill_s=0.1, decode_s=0.4, prefill_j=prefill_j,
                decode_j=decode_j, low_j=0.7 * total, high_j=1.3 * total,
                domains={"cpu": 0.8 * total, "dram": 0.2 * total}, text="x " * 10))
        return build_record(store.get_run(run_id), store.results(run_id), __version__)


# --- units, PUE, carbon, water, cost -------------------------------------------------------------

def _assume(**kw: Any) -> fp.Assumptions:
    base = dict(region="XXX", region_name="test", g_per_kwh=400.0, grid_source="t", grid_year="2023", pue=1.5,
                pue_source="t", wue_l_per_kwh=2.0, wue_source="t")
    base.update(kw)
    return fp.Assumptions(**base)


def test_joules_to_kwh() -> None:
    assert fp.j_to_kwh(3.6e6) == pytest.approx(1.0)
    assert fp.j_to_kwh(3600.0) == pytest.approx(1e-3)  # 1 Wh


def test_pue_applied_once_carbon_water_cost() -> None:
    a = _assume(price_per_kwh=0.2)
    f = fp.footprint(3.6e6, a)  # 1 kWh of IT energy
    assert f.facility_kwh == pytest.approx(1.5)  # x PUE, once
    assert f.carbon_g == pytest.approx(1.5 * 400.0)  # 600 g
    assert f.water_l == pytest.approx(2.0)  # WUE x IT kWh (not facility)
    assert f.cost == pytest.approx(0.3)


def test_renewable_share_reduces_carbon_only() -> None:
    f = fp.footprint(3.6e6, _assume(renewable_share=0.75))
    assert f.carbon_g == pytest.approx(1.5 * 400 * 0.25)
    assert f.facility_kwh == pytest.approx(1.5)
    with pytest.raises(BadInput):
        _assume(renewable_share=1.5)
    with pytest.raises(BadInput):
        _assume(pue=0.9)


def test_fleet_scale_queries_per_day_to_mw() -> None:
    # 36 J/query x 1e9/day = 3.6e10 J/day IT; x PUE 1.5 = 5.4e10 J/day = 0.625 MW
    s = fp.scale(36.0, 1e9, _assume())
    assert s.average_mw == pytest.approx(5.4e10 / 86_400 / 1e6)
    assert s.average_mw == pytest.approx(0.625)
    assert s.mwh_per_year == pytest.approx(0.625 * 8760)
    assert s.t_co2e_per_year == pytest.approx(0.625 * 8760 * 1000 * 400 / 1e6)  # 2190 t
    # water: 1e4 kWh IT/day x 2 L = 2e4 L/day = 20 m3/day
    assert s.water_m3_per_year == pytest.approx(20 * 365)
    with pytest.raises(BadInput):
        fp.scale(36.0, 0, _assume())


def test_defaults_come_from_the_tables() -> None:
    region = find_region("NO", load_regions())
    a = fp.assumptions(region)
    assert a.pue == pytest.approx(1.56) and "Uptime" in a.pue_source
    assert a.wue_l_per_kwh == pytest.approx(1.8)
    assert a.g_per_kwh == pytest.approx(30.1)
    b = fp.assumptions(region, pue=1.1, wue=0.2, g_per_kwh=10.0)
    assert (b.pue, b.wue_l_per_kwh, b.g_per_kwh) == (1.1, 0.2, 10.0)


# --- regions -------------------------------------------------------------------------------------

def test_region_by_iso3_iso2_and_name() -> None:
    regions = load_regions()
    assert find_region("NOR", regions).iso3 == "NOR"
    assert find_region("no", regions).iso3 == "NOR"
    assert find_region("Norway", regions).iso3 == "NOR"
    assert find_region("US", regions).iso3 == "USA"
    assert find_region("world", regions).iso3 == "WLD"


def test_unknown_region_lists_close_matches() -> None:
    with pytest.raises(BadInput) as exc:
        find_region("Norwya", load_regions())
    msg = str(exc.value)
    assert "Norway" in msg and "\n" not in msg


def test_grid_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "grid.csv"
    f.write_text("iso3,name,year,g_per_kwh,renewable_share_pct,source\nNOR,Norway (mine),2024,12.5,99,me\n"
                 "XAA,Atlantis,2024,5,100,me\n")
    regions = load_regions(f)
    assert find_region("NO", regions).g_per_kwh == 12.5
    assert find_region("Atlantis", regions).g_per_kwh == 5
    bad = tmp_path / "bad.csv"
    bad.write_text("country,value\nx,1\n")
    with pytest.raises(BadInput):
        load_regions(bad)


# --- floor ---------------------------------------------------------------------------------------

def test_floor_hand_worked(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    chip = ChipSpec("test chip", tdp_w=100.0, peak_flops=1e14, peak_basis="t", mem_bw_bps=1e12, source="t")
    f = floor_report(record, chip)
    w = workload(record)
    n = 134_515_008
    # prefill: compute 2 N x 160 tokens / (1e12 FLOP/J) vs memory 4 x 98e6 B / (1e10 B/J)
    assert f["phases"]["prefill"]["compute_j"] == pytest.approx(2 * n * 160 / 1e12)
    assert f["phases"]["prefill"]["memory_j"] == pytest.approx(4 * 98e6 / 1e10)
    # decode: 40 - 4 = 36 steps, weights 98e6 B each (batch 1), KV unknown (no GGUF path) -> left out
    assert w.decode_steps == 36 and w.kv is None
    assert f["phases"]["decode"]["memory_j"] == pytest.approx(36 * 98e6 / 1e10)
    assert f["phases"]["decode"]["bound"] == "memory"
    for phase in ("prefill", "decode"):
        e = f["phases"][phase]
        assert e["floor_j"] <= e["measured_j"]
        assert e["efficiency"] == pytest.approx(e["floor_j"] / e["measured_j"])
    assert any("KV" in n for n in f["notes"])


def test_floor_weights_shared_across_the_batch(tmp_path: Path) -> None:
    spec = _spec()
    spec["config"]["batch_size"] = 4
    record = make_run(tmp_path / "b.db", spec=spec)
    chip = ChipSpec("c", 100.0, 1e14, "t", 1e12, "t")
    assert floor_report(record, chip)["phases"]["decode"]["memory_j"] == pytest.approx(36 * 98e6 / 4 / 1e10)


def test_floor_on_our_cpu_says_not_in_the_table(tmp_path: Path) -> None:
    f = floor_report(make_run(tmp_path / "a.db"))
    assert not f["available"]
    assert f["table_row"] == "Intel Xeon Platinum 8592+"
    assert "not in the table" in f["reason"] and "peak FLOP/s" in f["reason"]


def test_floor_unknown_hardware_says_so(tmp_path: Path) -> None:
    spec = _spec()
    spec["hardware"]["cpu"], spec["hardware"]["cpu_microarchitecture"] = "Mystery RISC-V 9000", None
    f = floor_report(make_run(tmp_path / "a.db", spec=spec))
    assert not f["available"] and "not in the reference tables" in f["reason"]


def test_floor_never_reported_above_measured(tmp_path: Path) -> None:
    # a chip so slow its "floor" would exceed the measurement: reported as inconsistent, not >100 %
    record = make_run(tmp_path / "a.db", prefill_j=1e-6, decode_j=1e-6)
    f = floor_report(record, ChipSpec("slow", 1000.0, 1e9, "t", 1e6, "t"))
    for e in f["phases"].values():
        assert e["floor_j"] is None and e["status"] == "inconsistent" and e["efficiency"] is None
    assert f["efficiency"] is None


def test_floor_on_every_table_accelerator_stays_below_a_gpu_run(tmp_path: Path) -> None:
    record = make_run(tmp_path / "g.db", spec=_spec(gpus=[{"name": "NVIDIA H100 80GB HBM3"}], includes=["gpu"]))
    f = floor_report(record)
    assert f["available"] and f["table_row"] == "NVIDIA H100 SXM5 80GB"
    assert all(e["floor_j"] <= e["measured_j"] for e in f["phases"].values())


# --- accelerators and projections -----------------------------------------------------------------

def test_accelerator_fuzzy_names() -> None:
    assert find_accelerator("H100").name == "NVIDIA H100 SXM5 80GB"
    assert find_accelerator("h100 pcie").name == "NVIDIA H100 PCIe 80GB"
    assert find_accelerator("B200").name.startswith("NVIDIA B200")
    assert find_accelerator("mi300x").name == "AMD Instinct MI300X"
    with pytest.raises(BadInput, match="ambiguous"):
        find_accelerator("TPU")
    with pytest.raises(BadInput, match="unknown accelerator"):
        find_accelerator("Z9000")


def test_projection_keeps_its_bounds(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    targets = [find_accelerator(n) for n in ("H100", "B200", "L4", "MI300X", "TPU v5e")]
    p = project(record, targets)
    assert p["kind"] == "PROJECTION" and p["assumed"]["batch"] == 1
    ok = [t for t in p["targets"] if t["available"]]
    assert len(ok) == 4
    for t in ok:
        assert t["floor_j_per_query"] <= t["low_j_per_query"] <= t["central_j_per_query"] <= t["high_j_per_query"]
        for ph in t["phases"].values():
            assert ph["low_j"] <= ph["central_j"] <= ph["high_j"]
            assert ph["regime"] in ("latency-bound", "throughput-bound")
    tpu = next(t for t in p["targets"] if not t["available"])
    assert "TDP" in tpu["reason"]


def test_small_model_at_batch_1_is_latency_bound_and_batching_lowers_it(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")  # 135M parameters, 10 output tokens, batch 1
    one = project_one(record, "H100")
    assert one["assumed_batch"] == 1 and one["phases"]["decode"]["regime"] == "latency-bound"
    # the latency-bound energy is many times the roofline: the old roofline-only band sat far below it
    assert one["central_j_per_query"] > 10 * one["floor_j_per_query"]
    big = project_one(record, "H100", batch=64)
    assert big["assumed_batch"] == 64
    assert big["central_j_per_query"] < one["central_j_per_query"] / 10


def test_projection_onto_a_cpu_states_its_band(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    t = project_one(record, "EPYC 9654")
    assert t["kind"] == "cpu" and t["available"]
    assert t["floor_j_per_query"] <= t["low_j_per_query"] <= t["central_j_per_query"] <= t["high_j_per_query"]
    assert "not fitted" in t["model"]
    intel = project_one(record, "Xeon Platinum 8480+")
    assert not intel["available"] and "memory bandwidth" in intel["reason"]


def test_bad_batch_is_an_error(tmp_path: Path) -> None:
    record = make_run(tmp_path / "a.db")
    with pytest.raises(BadInput, match="--batch"):
        project_one(record, "H100", batch=0)


def test_generations_growth() -> None:
    g = generations()
    kyber = next(r for r in g["rows"] if "Kyber" in r["platform"])
    assert kyber["unit_growth"] == pytest.approx(600 / 6.5)  # ~92x per unit
    assert kyber["package_growth"] == pytest.approx((600 / 144) / (6.5 / 8))  # ~5x per package
    assert g["rows"][0]["unit_growth"] == pytest.approx(1.0)


# --- CLI -----------------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "joulescore.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_cli_impact_json(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_run(db)
    r = _cli("impact", "run-a", "--db", str(db), "--region", "FR", "--pue", "1.2", "--price-per-kwh", "0.1",
             "--compare-regions", "NO,IN", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["per_query"]["facility_j"] == pytest.approx(8.0 * 1.2)
    assert d["per_query"]["carbon_g"] == pytest.approx(8.0 * 1.2 / 3.6e6 * 56.0)
    assert d["compare_regions"][0]["ratio_to_first"] == 1.0
    assert d["compare_regions"][1]["ratio_to_first"] == pytest.approx(713.4 / 30.1)
    assert d["it_energy"]["meter_kind"] == "estimated" and d["it_energy"]["covers"] == ["cpu", "dram"]
    text = _cli("impact", "run-a", "--db", str(db), "--compare-regions", "NO,IS,FR,US,DE,JP,IN")
    assert text.returncode == 0 and "ESTIMATED" in text.stdout and "not in the table" in text.stdout


@pytest.mark.parametrize("args", [
    ("impact", "no-such-run"),
    ("impact", "run-a", "--region", "Atlantis"),
    ("impact", "run-a", "--compare-regions", "NO,XX"),
    ("project", "run-a", "--to", "H100,Z9000"),
    ("project", "run-a", "--to", "TPU"),
    ("project", "no-such-run", "--to", "H100"),
    ("project", "run-a", "--to", "H100", "--batch", "0"),
    ("project", "run-a", "--to", "EPYC"),
])
def test_cli_user_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    db = tmp_path / "a.db"
    make_run(db)
    r = _cli(*args, "--db", str(db))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0
    assert "Traceback" not in r.stderr


def test_cli_project_text(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_run(db)
    r = _cli("project", "run-a", "--to", "H100,B200,EPYC 9654", "--batch", "8", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "PROJECTION" in r.stdout and "batch 8 (from --batch)" in r.stdout and "latency-bound" in r.stdout
    g = _cli("project", "--generations")
    assert g.returncode == 0 and "92" in g.stdout


@pytest.mark.slow
def test_end_to_end_real_model(tmp_path: Path) -> None:
    db = tmp_path / "e2e.db"
    run = _cli("run", "--limit", "3", "--warmup", "0", "--db", str(db), "--json", "--no-progress")
    if run.returncode != 0 and ("Illegal instruction" in run.stderr or run.returncode in (-4, 132)):
        pytest.skip("llama-cpp-python cannot run on this CPU right now")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    r = _cli("impact", record["run_id"], "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["per_query"]["facility_j"] >= d["it_energy"]["j_per_query"]
    f = d["floor"]
    # the floor, where there is one, is never above the measured figure on a real run
    for e in f["phases"].values():
        if e.get("floor_j") is not None and e.get("measured_j"):
            assert e["floor_j"] <= e["measured_j"]
    # on every accelerator in the table the real run's tokens give a floor below what this CPU spent
    from joulescore.impact.hardware_specs import accelerators
    for chip in accelerators():
        if not chip.missing():
            fr = floor_report(RunRecord.model_validate(record), chip)
            assert all(e.get("floor_j") is None or e["floor_j"] <= e["measured_j"] for e in fr["phases"].values())
    p = _cli("project", record["run_id"], "--to", "H100,B200", "--db", str(db), "--json")
    assert p.returncode == 0, p.stderr
    for t in json.loads(p.stdout)["targets"]:
        assert t["low_j_per_query"] <= t["central_j_per_query"] <= t["high_j_per_query"]
