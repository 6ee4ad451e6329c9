"""``joulescore impact`` and ``joulescore project``: what a run means at the socket, the grid and at scale."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from joulescore.cli.app import app, out
from joulescore.cli.console import plain, print_json
from joulescore.cli.options import DbOption, JsonOption, read_store, split_list
from joulescore.errors import BadInput
from joulescore.units import fmt_sig as _fmt

TdpOption = Annotated[Optional[float], typer.Option("--tdp-w", help="your chip's TDP in W (floor)")]
PeakOption = Annotated[Optional[float], typer.Option("--peak-tflops", help="your chip's peak dense TFLOP/s (floor)")]
BwOption = Annotated[Optional[float], typer.Option("--mem-bw-gbs", help="your chip's memory bandwidth in GB/s (floor)")]
ParamsOption = Annotated[Optional[float], typer.Option(
    "--active-params", help="the model's parameters active per token, e.g. 7e9 (where the run records none)")]


def _print_impact(d: dict[str, Any]) -> None:
    it, a, q, s = d["it_energy"], d["assumptions"], d["per_query"], d["scale"]
    lo, hi = d["per_query_band"]["low"], d["per_query_band"]["high"]
    out.print(Text.assemble(("impact", "bold"), plain(f" of run {d['run_id']} ({d['model']}, task {d['task']})")))
    out.print(Text.assemble(f"IT energy: {_fmt(it['j_per_query'])} J/query, ", (it['meter_kind'].upper(), "bold"),
                            f", covers {it['covers_short']} only (band {_fmt(it['low_j_per_query'])}-{_fmt(it['high_j_per_query'])} J)"))
    out.print(f"region {a['region']} ({a['region_name']}): {a['g_per_kwh']:g} gCO2e/kWh "
              f"{('(' + a['grid_year'] + ')') if a['grid_year'] else ''}; PUE {a['pue']:g} [{a['pue_source']}]; "
              f"WUE {a['wue_l_per_kwh']:g} L/kWh IT [{a['wue_source']}]; renewable share {a['renewable_share']:g}",
              soft_wrap=True)
    t = Table(title="per query")
    for col in ("", "central", "low", "high"):
        t.add_column(col, justify="right")
    t.add_row("facility energy (Wh)", _fmt(q["facility_kwh"] * 1e3), _fmt(lo["facility_kwh"] * 1e3), _fmt(hi["facility_kwh"] * 1e3))
    t.add_row("carbon (gCO2e)", _fmt(q["carbon_g"]), _fmt(lo["carbon_g"]), _fmt(hi["carbon_g"]))
    t.add_row("water (mL)", _fmt(q["water_l"] * 1e3), _fmt(lo["water_l"] * 1e3), _fmt(hi["water_l"] * 1e3))
    if q["cost"] is not None:
        t.add_row("cost", _fmt(q["cost"]), _fmt(lo["cost"]), _fmt(hi["cost"]))
    out.print(t)
    slo, shi = d["scale_band"]["low"], d["scale_band"]["high"]
    t = Table(title=f"at scale: {s['queries_per_day']:g} queries/day")
    for col in ("", "central", "low", "high"):
        t.add_column(col, justify="right")
    for key, label in (("average_mw", "average power (MW)"), ("mwh_per_year", "energy (MWh/year)"),
                       ("t_co2e_per_year", "carbon (tCO2e/year)"), ("water_m3_per_year", "water (m3/year)"),
                       ("cost_per_year", "cost per year")):
        if s[key] is not None:
            t.add_row(label, _fmt(s[key]), _fmt(slo[key]), _fmt(shi[key]))
    out.print(t)
    if d["compare_regions"]:
        t = Table(title="regions side by side (same energy, PUE and renewable share)")
        for col in ("region", "name", "gCO2e/kWh", "year", "gCO2e/query", "tCO2e/year", "x first"):
            t.add_column(col, justify="right")
        for c in d["compare_regions"]:
            t.add_row(c["region"], c["name"], f"{c['g_per_kwh']:g}", c["year"], _fmt(c["carbon_g_per_query"]),
                      _fmt(c["t_co2e_per_year"]), _fmt(c["ratio_to_first"], "x"))
        out.print(t)
    _print_floor(d["floor"])
    for note in d["notes"]:
        out.print(f"note: {note}", soft_wrap=True)


def _print_floor(f: dict[str, Any]) -> None:
    row = f" (table row: {f['table_row']})" if f["table_row"] else ""
    out.print(Text.assemble(("physical floor", "bold"), plain(f" on {f['hardware']}{row}")))
    if not f["available"]:
        out.print(f"  not available: {f['reason']}", soft_wrap=True)
        return
    c = f["chip"]
    peak = f"{c['peak_tflops']:.3g} TFLOP/s ({c['peak_basis']})" if c["peak_tflops"] else "no peak FLOP/s"
    bw = f"{c['mem_bw_gbs']:g} GB/s" if c["mem_bw_gbs"] else "no memory bandwidth"
    out.print(f"  chip: TDP {c['tdp_w']:g} W, {peak}, {bw}; batch {f['workload']['batch_size']}", soft_wrap=True)
    t = Table()
    for col in ("phase", "bound", "floor J", "measured J", "floor / measured"):
        t.add_column(col, justify="right")
    for phase, e in f["phases"].items():
        if e["status"] == "missing":
            t.add_row(phase, "", "missing", _fmt(e["measured_j"]), f"no {e['missing']}")
            continue
        floor = e["floor_j"] if e["floor_j"] is not None else e.get("computed_floor_j")
        eff = _fmt(100 * e["efficiency"], "%") if e["efficiency"] is not None else e["status"]
        t.add_row(phase, e["bound"], _fmt(floor), _fmt(e["measured_j"]), eff)
    out.print(t)
    for note in f["notes"]:
        out.print(f"  note: {note}", soft_wrap=True)


@app.command()
def impact(
    run_id: str,
    region: Annotated[str, typer.Option(help="grid region: ISO3, ISO2 or country name (WLD = world)")] = "WLD",
    pue: Annotated[Optional[float], typer.Option(help="power usage effectiveness (default: industry average)")] = None,
    wue: Annotated[Optional[float], typer.Option(help="on-site water, L per kWh of IT energy")] = None,
    g_per_kwh: Annotated[Optional[float], typer.Option("--g-per-kwh", help="grid intensity, replaces the region's")] = None,
    grid_file: Annotated[Optional[Path], typer.Option(help="your grid CSV (columns iso3, name, g_per_kwh, ...)")] = None,
    renewable_share: Annotated[float, typer.Option(help="share (0-1) covered by a renewable PPA")] = 0.0,
    price_per_kwh: Annotated[Optional[float], typer.Option(help="electricity price per kWh")] = None,
    queries_per_day: Annotated[float, typer.Option(help="fleet scale")] = 1e9,
    compare_regions: Annotated[Optional[str], typer.Option(help="e.g. NO,IS,FR,US,DE,JP,IN")] = None,
    tdp_w: TdpOption = None, peak_tflops: PeakOption = None, mem_bw_gbs: BwOption = None,
    active_params: ParamsOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Facility energy, carbon, water and cost of a run, per query and at fleet scale, and its floor."""
    from joulescore.impact.summary import chip_for_floor, impact_data

    record = read_store(db).record(run_id)
    chip, name = chip_for_floor(record, tdp_w, peak_tflops, mem_bw_gbs)
    d = impact_data(record, region=region, pue=pue, wue=wue, g_per_kwh=g_per_kwh, grid_file=grid_file,
                    renewable_share=renewable_share, price_per_kwh=price_per_kwh,
                    queries_per_day=queries_per_day, compare=split_list(compare_regions), chip=chip, chip_name=name,
                    active_params=active_params)
    if as_json:
        print_json(out, d)
    else:
        _print_impact(d)


@app.command()
def project(
    run_id: Annotated[Optional[str], typer.Argument(help="a stored run")] = None,
    to: Annotated[Optional[str], typer.Option(help="accelerators or CPUs, e.g. H100,B200,MI300X,'EPYC 9654'")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="project at this batch size (default: the run's)")] = None,
    generations: Annotated[bool, typer.Option("--generations", help="print platform power, Ampere to Kyber")] = False,
    list_: Annotated[bool, typer.Option("--list", help="list the accelerators in the table")] = False,
    hardware_file: Annotated[Optional[Path], typer.Option(help="your accelerator CSV (accelerators.csv columns)")] = None,
    tdp_w: TdpOption = None, peak_tflops: PeakOption = None, mem_bw_gbs: BwOption = None,
    active_params: ParamsOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """PROJECT a measured run onto other accelerators (roofline-scaled estimate, with bounds)."""
    from joulescore.impact import projection
    from joulescore.impact.hardware_specs import accelerators, find_target
    from joulescore.impact.summary import chip_for_floor

    if list_:
        chips = [c.__dict__ for c in accelerators(hardware_file)]
        if as_json:
            print_json(out, chips)
        else:
            for c in chips:
                out.print(f"{c['name']}: TDP {_fmt(c['tdp_w'], ' W')}, {_fmt(c['peak_flops'] and c['peak_flops'] / 1e12, ' TFLOP/s')}, "
                          f"{_fmt(c['mem_bw_bps'] and c['mem_bw_bps'] / 1e9, ' GB/s')}", soft_wrap=True)
        return
    if generations:
        g = projection.generations()
        if as_json:
            print_json(out, g)
            return
        t = Table(title=f"NVIDIA platform power (growth vs {g['baseline']})")
        for col in ("platform", "year", "unit kW", "GPU packages", "kW/package", "x unit", "x package"):
            t.add_column(col, justify="right")
        for r in g["rows"]:
            t.add_row(r["platform"], r["year"], _fmt(r["unit_power_kw"]) if r["unit_power_kw"] else f"({r['unit_power_kw_range']})",
                      _fmt(r["gpu_packages"]), _fmt(r["kw_per_package"]), _fmt(r["unit_growth"], "x"),
                      _fmt(r["package_growth"], "x"))
        out.print(t)
        out.print(f"caveat: {g['caveat']}", soft_wrap=True)
        if not run_id:
            return
    if batch is not None and batch < 1:
        raise BadInput(f"--batch must be 1 or more, got {batch}")
    if not run_id:
        raise BadInput("give a RUN_ID (with --to), or --generations / --list")
    names = split_list(to)
    if not names:
        raise BadInput("give --to with one or more accelerators, e.g. --to H100,B200")
    targets = [find_target(n, hardware_file) for n in names]
    record = read_store(db).record(run_id)
    chip, name = chip_for_floor(record, tdp_w, peak_tflops, mem_bw_gbs)
    p = projection.project(record, targets, chip, name, active_params, batch=batch)
    if as_json:
        print_json(out, p)
        return
    _print_projection(p)


def _print_projection(p: dict[str, Any]) -> None:
    m, fit, a = p["measured"], p["fit"], p["assumed"] or {}
    out.print(Text.assemble(("PROJECTION", "bold red"), f" (not a measurement) of run {p['run_id']}: "
              f"{p['workload']['queries']} queries, {p['workload']['input_tokens']} input / "
              f"{p['workload']['output_tokens']} output tokens, run at batch {p['workload']['batch_size']}"))
    out.print(f"measured on {m['hardware']} ({m['meter_kind']}): {_fmt(m['j_per_query'])} J/query "
              f"(prefill {_fmt(m['prefill_j'])} J, decode {_fmt(m['decode_j'])} J in total)", soft_wrap=True)
    floor = m["floor"]
    if floor and floor["available"]:
        phases = "; ".join(f"{k} missing (no {e['missing']})" if e["status"] == "missing" else
                           f"{k} {e['status']}" if e["floor_j"] is None else f"{k} {_fmt(e['floor_j'])} J"
                           for k, e in floor["phases"].items())
        derived = ", peak FLOP/s derived, not published" if floor["chip"]["peak_derived"] else ""
        out.print(f"physical floor on the measured chip (table row {floor['table_row']}{derived}): {phases}; "
                  "`joulescore impact` has the details", soft_wrap=True)
    elif floor:
        out.print(f"physical floor on the measured chip: not available: {floor['reason']}", soft_wrap=True)
    if a:
        out.print(f"assumed: batch {a['batch']} (from {a['batch_from']}), engine {a['engine']}, "
                  f"{a['layers']:.0f} layers ({a['layers_from']})", soft_wrap=True)
    eta = ", ".join(f"{k} {v:.0%}" for k, v in fit["eta"].items())
    floor = ", ".join(f"{k} {v:.3g} ms" for k, v in fit["step_floor_ms_per_layer"].items())
    out.print(f"model fitted on {fit['rows']} published GPU rows: share of roofline {eta}; step floor per layer "
              f"{floor}; busy power {fit['busy_power_fraction_of_tdp']:.0%} of TDP; band x/{fit['band_factor']:.2f}",
              soft_wrap=True)
    t = Table(title="projected energy per query (J)")
    for col in ("target", "batch", "roofline", "low", "central", "high", "central J/token", "prefill", "decode"):
        t.add_column(col, justify="right")
    notes = []
    for r in p["targets"]:
        if not r["available"]:
            t.add_row(r["accelerator"], "", "n/a", "", r["reason"], "", "", "", "")
            continue
        t.add_row(r["accelerator"], str(r["assumed_batch"]), _fmt(r["floor_j_per_query"]), _fmt(r["low_j_per_query"]),
                  _fmt(r["central_j_per_query"]), _fmt(r["high_j_per_query"]), _fmt(r["central_j_per_output_token"]),
                  r["phases"]["prefill"]["regime"], r["phases"]["decode"]["regime"])
        if r["note"] and r["note"] not in notes:
            notes.append(r["note"])
    out.print(t)
    for note in notes:
        out.print(f"note: {note}", soft_wrap=True)
    out.print("note: a PROJECTION from published GPU measurements (docs/impact.md has the leave-one-out check); "
              "never a measurement, never written into the run's record or label. Chip only: no host CPU, DRAM "
              "or PUE.", soft_wrap=True)
