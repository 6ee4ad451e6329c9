"""Interference, fast: /proc/stat arithmetic, the disturbed rule, --threads auto, the estimator's attribution,
GPU throttle reasons and other processes through the NVML stand-in, and the board leaving a disturbed run out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from joulescore.meters.base import Domain
from joulescore.meters.estimator import CpuPowerModel, EstimatorMeter, RamPowerModel, VcpuWatts
from joulescore.meters.interference import (
    TICK_S,
    BusyProbe,
    CpuStat,
    InterferenceWatch,
    cpu_window,
    free_threads,
    parse_proc_stat,
    read_cpu_freq,
)
from joulescore.meters.nvml import NvmlMeter
from joulescore.report.board import BoardRow, build_board, rate, row_from_record
from joulescore.store.interference import summarize
from joulescore.store.record import build_record
from joulescore.store.rows import RowExtra, WindowFigures
from joulescore.store.sqlite import ResultRow, RunRow
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.records import make_record

STAT = """cpu  300 0 100 500 0 0 0 20 0 0
cpu0 100 0 50 250 0 0 0 10 0 0
cpu1 200 0 50 250 0 0 0 10 0 0
intr 1 2 3
"""


def test_proc_stat_is_summed_over_the_run_cpus_in_seconds() -> None:
    both = parse_proc_stat(STAT)
    assert both is not None
    assert both.busy_s == pytest.approx(400 * TICK_S)
    assert both.idle_s == pytest.approx(500 * TICK_S) and both.steal_s == pytest.approx(20 * TICK_S)
    one = parse_proc_stat(STAT, cpus={1})
    assert one is not None and one.busy_s == pytest.approx(250 * TICK_S) and one.per_cpu_busy_s == {1: one.busy_s}
    assert parse_proc_stat("intr 1 2\n") is None


def test_others_are_the_busy_time_that_is_not_the_run_trees() -> None:
    begin = (0.0, CpuStat(busy_s=10.0, idle_s=10.0, steal_s=0.0, per_cpu_busy_s={}), 5.0)
    # 10 s on 2 CPUs: 20 CPU-s offered; 14 busy, of which 6 were the run's own, 1 stolen
    end = (10.0, CpuStat(busy_s=24.0, idle_s=15.0, steal_s=1.0, per_cpu_busy_s={}), 11.0)
    w = cpu_window(begin, end)
    assert (w.capacity_s, w.own_s, w.others_s, w.steal_s) == (20.0, 6.0, 8.0, 1.0)
    assert w.others_pct == pytest.approx(40.0) and w.steal_pct == pytest.approx(5.0)


def rows(others_s: float, steal_s: float = 0.0, n: int = 4, **extra: Any) -> list[WindowFigures]:
    return [WindowFigures(wall_s=1.0, capacity_s=2.0, own_s=1.0, others_s=others_s, steal_s=steal_s, **extra)
            for _ in range(n)]


def test_a_run_above_a_threshold_is_disturbed_and_says_why() -> None:
    quiet = summarize(rows(0.1), {}, 10.0, 5.0)
    assert quiet["disturbed"] is False and quiet["reason"] is None and quiet["others_cpu_pct"] == 5.0
    busy = summarize(rows(0.96), {}, 10.0, 5.0)
    assert busy["disturbed"] is True
    assert busy["reason"] == "other processes used 48% of the machine's CPU"
    assert busy["prompts_disturbed"] == 4 and busy["prompts_measured"] == 4
    stolen = summarize(rows(0.0, steal_s=0.2), {}, 10.0, 5.0)
    assert stolen["disturbed"] and "stole 10%" in stolen["reason"]
    # the threshold is the run's own setting
    assert summarize(rows(0.96), {}, 60.0, 5.0)["disturbed"] is False


def test_per_prompt_noise_is_summed_not_clamped() -> None:
    # a clock tick either way in short windows: the sums cancel, nothing is marked
    noisy = [WindowFigures(wall_s=0.02, capacity_s=0.04, own_s=0.02, others_s=s, steal_s=0.0)
             for s in (0.01, -0.01) * 50]
    assert summarize(noisy, {}, 10.0, 5.0)["others_cpu_pct"] == 0.0


def test_an_engine_outside_the_tree_is_not_counted_as_a_neighbour() -> None:
    out = summarize(rows(1.5), {"attributable": False}, 10.0, 5.0)
    assert out["disturbed"] is False and out["others_cpu_pct"] == 75.0
    assert any("--endpoint" in n for n in out["notes"])


def test_threads_auto_leaves_the_cores_others_hold() -> None:
    def probe(others_s: float, wall_s: float = 1.0, cpus: int = 4) -> BusyProbe:
        return BusyProbe(cpu_window((0.0, CpuStat(0, 0, 0, {}), 0.0),
                                    (wall_s, CpuStat(others_s, cpus * wall_s - others_s, 0, {}), 0.0)), cpus)

    assert free_threads(probe(0.2), 4)[0] == 4  # background noise: every core
    n, why = free_threads(probe(1.0), 4)
    assert n == 3 and "held 1.00 of 4 CPUs" in why and "3 free ones" in why
    assert free_threads(probe(1.9, cpus=2), 2)[0] == 1  # at least one thread
    assert free_threads(None, 2)[0] == 2


def test_cpu_frequency_caps_and_throttling_are_read_where_cpufreq_exists(tmp_path: Path) -> None:
    for cpu, (cur, policy) in enumerate(((1_500_000, 3_000_000), (3_000_000, 2_000_000))):
        freq = tmp_path / f"cpu{cpu}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "cpuinfo_max_freq").write_text("3000000\n")
        (freq / "scaling_cur_freq").write_text(f"{cur}\n")
        (freq / "scaling_max_freq").write_text(f"{policy}\n")
        throttle = tmp_path / f"cpu{cpu}" / "thermal_throttle"
        throttle.mkdir()
        (throttle / "core_throttle_count").write_text("3\n")
    state = read_cpu_freq([0, 1], tmp_path)
    assert state is not None
    assert state.min_pct_of_max == 50.0 and state.policy_capped == [1] and state.throttle_events == 6
    assert read_cpu_freq([0], tmp_path / "none") is None


# -- the estimator's attribution ------------------------------------------------------------------------

MODEL = CpuPowerModel(central=VcpuWatts(0.5, 3.0, "c", "s"), low=VcpuWatts(0.5, 3.0, "l", ""),
                      high=VcpuWatts(0.5, 3.0, "h", ""))
RAM = RamPowerModel(0.3, 0.3, 0.3, ("r",))


class Machine:
    """A 2-vCPU allocation whose clock, run CPU time and machine busy time the test moves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.t = 0.0
        self.own = 0.0
        self.busy = 0.0
        monkeypatch.setattr("joulescore.meters.estimator.now_s", lambda: self.t)

    def stat(self) -> CpuStat:
        return CpuStat(self.busy, 0.0, 0.0, {})

    def step(self, seconds: float, own_cores: float, others_cores: float) -> None:
        self.t += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + others_cores) * seconds


def meter_on(machine: Machine) -> EstimatorMeter:
    return EstimatorMeter(MODEL, RAM, vcpus=2, ram_gb=10.0, cpu_seconds=lambda: machine.own,
                          machine_stat=machine.stat)


def test_quiet_machine_charges_the_run_the_whole_idle_power(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine(monkeypatch)
    meter = meter_on(machine)
    begin = meter.read()
    for _ in range(10):
        machine.step(1.0, own_cores=1.0, others_cores=0.01)  # a daemon's 0.5%: below the floor
        end = meter.read()
    m = meter.measurement(begin, end)
    # 10 s: idle 2 x 0.5 W x 10 s + dynamic 2.5 W x 10 CPU-s; DRAM 10 GB x 0.3 W/GB x 10 s
    assert m.energy_j[Domain.CPU] == pytest.approx(10 + 25)
    assert m.energy_j[Domain.DRAM] == pytest.approx(30)
    whole = m.detail_j["cpu:machine"] + m.detail_j["dram:machine"]
    assert whole == pytest.approx(m.total_j + 2.5 * 0.1)  # the daemon's dynamic power, on the wall socket


def test_a_busy_neighbour_takes_its_share_of_the_idle_power(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine(monkeypatch)
    meter = meter_on(machine)
    machine.step(3.0, own_cores=1.0, others_cores=1.0)  # the trailing window fills
    begin = meter.read()
    for _ in range(10):
        machine.step(1.0, own_cores=1.0, others_cores=1.0)
        end = meter.read()
    m = meter.measurement(begin, end)
    # others' 1.0 core less the 2% floor (0.04 of 2 cores) -> share 1 / (1 + 0.96)
    share = 1.0 / (1.0 + 0.96)
    assert m.energy_j[Domain.CPU] == pytest.approx(10 * share + 25, rel=1e-6)
    assert m.energy_j[Domain.DRAM] == pytest.approx(30 * share, rel=1e-6)
    # the whole machine: all the idle power and both processes' dynamic power
    assert m.detail_j["cpu:machine"] == pytest.approx(10 + 2.5 * 20)
    assert m.detail_j["dram:machine"] == pytest.approx(30)


def test_without_the_machine_count_nothing_is_attributed(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine(monkeypatch)
    meter = EstimatorMeter(MODEL, RAM, vcpus=2, ram_gb=10.0, cpu_seconds=lambda: machine.own,
                           machine_stat=machine.stat, attribute=False)
    begin = meter.read()
    machine.step(10.0, own_cores=1.0, others_cores=1.0)
    m = meter.measurement(begin, meter.read())
    assert m.energy_j[Domain.CPU] == pytest.approx(35) and m.detail_j == {}
    assert not meter.attributing


# -- GPUs --------------------------------------------------------------------------------------------------

def test_gpu_throttling_and_other_processes_mark_the_run() -> None:
    gpu = FakeGpu(name="NVIDIA H100", uuid="GPU-1", throttle_reasons=0x40 | 0x4, processes=[(1, 10**9)])
    meter = NvmlMeter(nvml=FakeNvml(gpu), sync=None, env={})
    state = meter.gpu_state()
    assert state is not None and state["throttle_mask"] == 0x44 and state["other_processes"][0]["pid"] == 1
    watch = InterferenceWatch(lambda: 0.0, meter, sample_interval_s=0.05)
    watch.begin()
    figures = watch.end()
    assert figures["gpu_throttle"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert figures["gpu_other_pids"] == [1]
    out = summarize([WindowFigures(**figures)], {}, 10.0, 5.0)
    assert out["disturbed"]
    assert "the GPU clocks were slowed (hw_thermal_slowdown)" in out["reasons"]
    assert any("other compute processes ran on the GPU (pid 1)" in r for r in out["reasons"])
    assert any("sw_power_cap" in n for n in out["notes"])


def test_a_gpu_at_its_power_cap_alone_is_not_disturbed() -> None:
    gpu = FakeGpu(throttle_reasons=0x4, processes=[(os.getpid(), 10**9)])
    watch = InterferenceWatch(lambda: 0.0, NvmlMeter(nvml=FakeNvml(gpu), sync=None, env={}))
    watch.begin()
    assert summarize([WindowFigures(**watch.end())], {}, 10.0, 5.0)["gpu_throttle_reasons"] == ["sw_power_cap"]
    assert not summarize([WindowFigures(**watch.end())], {}, 10.0, 5.0)["disturbed"]


def test_a_driver_without_throttle_reasons_reports_none() -> None:
    meter = NvmlMeter(nvml=FakeNvml(FakeGpu(errors={"throttle": 3})), sync=None, env={})
    assert meter.gpu_state() == {"throttle_mask": 0, "other_processes": []}


# -- the record and the board --------------------------------------------------------------------------

def _row(i: int, energy_j: float, interference: dict[str, Any]) -> ResultRow:
    return ResultRow(prompt_index=i, prompt_id=f"p{i}", ok=True, error=None, finish_reason="length", input_tokens=10,
                     output_tokens=10, prefill_s=0.5, decode_s=0.5, prefill_j=energy_j / 2, decode_j=energy_j / 2,
                     low_j=energy_j, high_j=energy_j, domains={"cpu": energy_j}, text="x",
                     extra=RowExtra(interference=WindowFigures(**interference), machine_j=2 * energy_j))


def test_the_record_carries_interference_interval_and_the_whole_machine() -> None:
    spec = {"config": {"protocol": "energy-score", "batch_size": 1, "max_new_tokens": 10, "disturbed_cpu_pct": 10.0},
            "model": {"name": "m", "backend": "llama.cpp"},
            "task": {"name": "chat", "num_prompts": 20, "metric": "length"},
            "hardware": {}, "meter": {"kind": "estimated", "domains": ["cpu"]},
            "interference": {"cpus": 2, "attributable": True, "before_run": {"others_cpu_pct": 51.0},
                             "threads": {"requested": "auto", "threads": 1, "reason": "r"}}}
    run = RunRow("r1", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", "complete", 20, None, None,
                 spec, None)
    results = [_row(i, 10.0 + i % 3, {"wall_s": 1.0, "capacity_s": 2.0, "own_s": 1.0, "others_s": 1.0,
                                      "steal_s": 0.0}) for i in range(20)]
    record = build_record(run, results, "0")
    it = record.interference
    assert it is not None and it.disturbed and it.reason == "other processes used 50% of the machine's CPU"
    assert it.before_run == {"others_cpu_pct": 51.0} and it.threads is not None and it.threads["threads"] == 1
    assert record.energy.whole_machine_j == pytest.approx(2 * record.energy.total_j)
    assert record.whole_machine_wh_per_1000_queries == pytest.approx(2 * (record.wh_per_1000_queries or 0), rel=1e-4)
    iv = record.interval
    assert iv is not None and iv.n == 20
    assert iv.j_per_query_low < (record.j_per_query or 0) < iv.j_per_query_high
    assert record.sampling is None

    board_rows = rate([row_from_record(record)])
    assert board_rows[0].stars is None and board_rows[0].stars_note.startswith("DISTURBED, not rated")


def _board_run(wh: float, disturbed: str = "", sampled: bool = False, half: float | None = 1.0) -> BoardRow:
    return BoardRow(model=f"m{wh}", task="chat", wh_per_1000=wh, j_per_token=0.1, quality=None, quality_metric="",
                    higher_is_better=None, hardware="h", hardware_class="CPU x", protocol="energy-score",
                    size_class="A", kind="estimated", run_id=f"r{wh}", disturbed=disturbed, sampled=sampled,
                    half_width_pct=half)


def test_board_leaves_a_disturbed_run_out_of_the_stars_and_the_bins() -> None:
    quiet = [_board_run(w) for w in (10, 12, 14, 16, 20)]
    rows = {r.wh_per_1000: r for r in rate([*quiet, _board_run(30, disturbed="other processes used 48%")])}
    assert rows[30].stars is None and "DISTURBED" in rows[30].stars_note
    # the bins are those of the five quiet runs alone (30 would have widened them)
    assert {w: rows[w].stars for w in (10, 12, 14, 16, 20)} == {10: 5, 12: 4, 14: 3, 16: 2, 20: 1}
    # and a disturbed run does not make up a group's numbers either
    four = rate([*quiet[:4], _board_run(30, disturbed="x")])
    assert all(r.stars is None for r in four)


def test_a_sampled_run_is_rated_only_within_the_boards_precision() -> None:
    quiet = [_board_run(w) for w in (10, 12, 14, 16)]
    loose = {r.run_id: r for r in rate([*quiet, _board_run(20, sampled=True, half=4.0)], precision_pct=2.0)}
    assert loose["r20"].stars is None and "wider than the board's precision (+/-2%)" in loose["r20"].stars_note
    tight = {r.run_id: r for r in rate([*quiet, _board_run(20, sampled=True, half=1.5)], precision_pct=2.0)}
    assert tight["r20"].stars == 1
    relaxed = {r.run_id: r for r in rate([*quiet, _board_run(20, sampled=True, half=4.0)], precision_pct=5.0)}
    assert relaxed["r20"].stars == 1
    # a full run is rated whatever its interval
    assert rate([*quiet, _board_run(20, half=9.0)])[-1].stars == 1


def test_build_board_marks_a_disturbed_record() -> None:
    records = [make_record(run_id=f"r{i}", wh_per_1000_queries=1.0 + i) for i in range(5)]
    records.append(make_record(run_id="noisy", wh_per_1000_queries=9.0,
                               interference={"measured": True, "disturbed": True,
                                             "reason": "other processes used 48% of the machine's CPU"}))
    rows = {r.run_id: r for r in build_board(records, with_references=False)}
    assert rows["noisy"].disturbed == "other processes used 48% of the machine's CPU" and rows["noisy"].stars is None
    assert rows["r0"].stars == 5 and rows["r4"].stars == 1


def test_the_label_says_disturbed_and_carries_the_interval(tmp_path: Path) -> None:
    from joulescore.report.board import run_stars
    from joulescore.report.label import render_label

    record = make_record(interference={"measured": True, "disturbed": True,
                                       "reason": "other processes used 48% of the machine's CPU"},
                         interval={"method": "m", "n": 10, "j_per_query_low": 5.0, "j_per_query_high": 7.0,
                                   "wh_per_1000_queries_low": 1.389, "wh_per_1000_queries_high": 1.944})
    line = run_stars(record, [])
    assert line.startswith("DISTURBED, not rated: other processes used 48%")
    svg = render_label(record, line, tmp_path / "label.svg").read_text(encoding="utf-8")
    assert "DISTURBED" in svg and "95% CI 1.389-1.944" in svg


def test_thresholds_can_be_set_once_for_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from joulescore.errors import BadInput
    from joulescore.model.config import RunConfig

    monkeypatch.setenv("JOULESCORE_DISTURBED_CPU_PCT", "25%")
    monkeypatch.setenv("JOULESCORE_DISTURBED_STEAL_PCT", "7")
    assert (RunConfig().disturbed_cpu_pct, RunConfig().disturbed_steal_pct) == (25.0, 7.0)
    assert RunConfig(disturbed_cpu_pct=10).disturbed_cpu_pct == 10.0  # a flag beats the environment
    for bad in ("abc", "150", "nan"):
        monkeypatch.setenv("JOULESCORE_DISTURBED_CPU_PCT", bad)
        with pytest.raises(BadInput, match="JOULESCORE_DISTURBED_CPU_PCT must be a percentage"):
            RunConfig()
    monkeypatch.delenv("JOULESCORE_DISTURBED_CPU_PCT")
    monkeypatch.delenv("JOULESCORE_DISTURBED_STEAL_PCT")
    assert (RunConfig().disturbed_cpu_pct, RunConfig().disturbed_steal_pct) == (10.0, 5.0)
