"""The proxy's attribution rule on a scripted meter (the hardware boundary): exact joules, no real time."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulescore.meters.base import Domain, Measurement, Meter, Provenance, Reading
from joulescore.proxy.ledger import Ledger, Tracked, split


class Script(Meter):
    """A meter whose cumulative CPU counter is whatever the test sets before each event."""

    name = "script"

    def __init__(self) -> None:
        self.energy_j = 0.0
        self.t_s = 0.0

    def provenance(self) -> Provenance:
        return Provenance("measured", ("script",), ("cpu",), 0.0)

    def read(self) -> Reading:
        e = {Domain.CPU: self.energy_j}
        return Reading(self.t_s, e, dict(e), dict(e))

    def at(self, t_s: float, energy_j: float) -> Script:
        self.t_s, self.energy_j = t_s, energy_j
        return self


Book = tuple[Script, Ledger, dict[str, Tracked], list[float]]


@pytest.fixture
def book() -> Book:
    """``settled`` gets a request once its energy is final: at its end, or later when its peers end."""
    meter = Script()
    settled: dict[str, Tracked] = {}
    idle: list[float] = []

    def on_idle(e: Measurement, span_s: float) -> None:
        idle.append(e.total_j)

    def on_settled(t: Tracked) -> None:
        assert t.request_id not in settled  # final once, never twice
        settled[t.request_id] = t

    def on_ended(t: Tracked, e: Measurement, final: bool) -> None:
        if final:
            on_settled(t)

    ledger = Ledger(meter, on_settled, on_idle, on_ended)
    return meter, ledger, settled, idle


def test_idle_is_never_charged_and_one_request_gets_its_whole_window(book: Book) -> None:
    meter, ledger, settled, idle = book
    meter.at(1, 10)
    ledger.start("a", streamed=True)  # 0-1 s: idle, 10 J
    meter.at(2, 30)
    ledger.first_token("a")
    meter.at(3, 60)
    energy, final = ledger.end("a", 5, 7)
    meter.at(4, 65)
    ledger.tick()
    assert final and energy.total_j == pytest.approx(50.0)
    assert settled["a"].energy.total_j == pytest.approx(50.0)
    assert sum(idle) == pytest.approx(15.0)


def test_overlapping_requests_split_by_the_batch_rule_and_add_up(book: Book) -> None:
    meter, ledger, settled, idle = book
    ledger.start("a", streamed=True)
    meter.at(1, 12)
    ledger.start("b", streamed=True)  # 0-1: a alone in prefill: 12 J to a
    meter.at(2, 24)
    ledger.first_token("a")  # 1-2: both in prefill, by input tokens 3:1 -> a 9, b 3
    meter.at(3, 36)
    ledger.first_token("b")  # 2-3: a decode, b prefill: 6 J each group
    meter.at(4, 48)
    energy_a, final_a = ledger.end("a", 30, 10)  # 3-4: both decode, by output tokens 10:30 -> a 3, b 9
    assert not final_a and "a" not in settled  # b is still in flight: a's figure may still move
    meter.at(5, 60)
    energy_b, final_b = ledger.end("b", 10, 30)  # 4-5: b alone: 12
    assert final_b and "a" in settled
    assert settled["a"].energy.total_j == pytest.approx(12 + 9 + 6 + 3)
    assert settled["b"].energy.total_j == pytest.approx(3 + 6 + 9 + 12)
    assert settled["a"].energy.total_j + settled["b"].energy.total_j + sum(idle) == pytest.approx(60.0)
    assert energy_b.total_j == pytest.approx(30.0)


def test_a_request_that_never_ends_keeps_its_intervals_unsettled(book: Book) -> None:
    meter, ledger, settled, _ = book
    ledger.start("a", streamed=False)
    meter.at(1, 5)
    ledger.close()
    assert not settled and ledger.unsettled_j() == pytest.approx(5.0)


def test_split_without_token_counts_is_even() -> None:
    shares = split({"a": "whole", "b": "whole"}, lambda rid, phase: 0)
    assert shares == {"a": 0.5, "b": 0.5}


def test_a_request_ending_under_a_long_one_is_reported_at_once_then_settled_exactly(book: Book) -> None:
    """The row is written when the request ends (provisional), and the second write keeps the exact split."""
    meter, _, settled, _ = book
    ended: list[tuple[str, float, bool]] = []
    ledger = Ledger(meter, lambda t: settled.__setitem__(t.request_id, t), lambda e, s: None,
                    lambda t, e, final: ended.append((t.request_id, e.total_j, final)))
    ledger.start("long", streamed=True)
    for i in range(3):
        ledger.start(f"q{i}", streamed=False)
        meter.at(meter.t_s + 1, meter.energy_j + 10)
        ledger.end(f"q{i}", 1, 1)
    assert [(rid, final) for rid, _, final in ended] == [("q0", False), ("q1", False), ("q2", False)]
    assert ended[0][1] > 0  # a provisional figure, not zero
    assert not settled
    meter.at(meter.t_s + 1, meter.energy_j + 10)
    energy, final = ledger.end("long", 1, 5)
    assert final and set(settled) == {"q0", "q1", "q2"}
    parts = energy.total_j + sum(settled[f"q{i}"].energy.total_j for i in range(3))
    assert parts == pytest.approx(40.0)  # every joule charged once, none lost to the provisional rows


def test_a_provisional_row_is_settled_in_place(tmp_path: Path) -> None:
    from joulescore.store.requests import RequestRow, RequestStore

    with RequestStore(tmp_path / "r.db") as store:
        store.start_session("s", "http://127.0.0.1:1", "measured", {})
        row = RequestRow("r1", "s", 1.0, "/v1/chat/completions", "m", False, "ok", 200, 3, 2, "usage", None, 0.1,
                         1.5, 1.4, 1.6, {"cpu": 1.5}, "measured", None, energy_final=False)
        assert store.add_request(row) and not store.add_request(row)  # stored once
        assert [(r.energy_j, r.energy_final) for r in store.requests_since(0)] == [(1.5, False)]
        assert store.settle_request("r1", 2.0, 1.9, 2.1, {"cpu": 2.0})
        got = store.requests_since(0)[0]
    assert (got.energy_j, got.low_j, got.high_j, got.domains, got.energy_final) == (2.0, 1.9, 2.1, {"cpu": 2.0}, True)


def test_windows_add_and_scale_by_domain_with_their_bands() -> None:
    prov = Provenance("estimated", ("script",), ("cpu",), 20.0)
    a = Measurement(2.0, {Domain.CPU: 10.0}, {Domain.CPU: 8.0}, {Domain.CPU: 12.0}, prov)
    b = Measurement(1.0, {Domain.CPU: 4.0, Domain.DRAM: 2.0}, {Domain.CPU: 3.0, Domain.DRAM: 1.0},
                    {Domain.CPU: 5.0, Domain.DRAM: 3.0}, prov, detail_j={"cpu0": 4.0})
    total = Measurement.empty(prov).plus(a).plus(b, 0.5)
    assert total.energy_j == {Domain.CPU: 12.0, Domain.DRAM: 1.0} and total.duration_s == 2.5
    assert (total.total_low_j, total.total_high_j) == (10.0, 16.0) and total.detail_j == {"cpu0": 2.0}
    assert a.energy_j == {Domain.CPU: 10.0}  # the parts are left as they were
