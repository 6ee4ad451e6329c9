"""Scraped counters without Prometheus: interpolation, resets and wraps, series that come and go, the exporter
meter's one-line errors, and the proxy ledger's settle rule under a meter whose readings become final late."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
from scrape_exporters import Counter, Exporter, dcgm, kepler_pods

from joulescore.errors import BadInput
from joulescore.meters import select_meter
from joulescore.meters.base import Domain, Meter, Provenance, Reading
from joulescore.meters.presets import matches, parse_selector
from joulescore.meters.scraped import CounterSeries
from joulescore.model.scrape import ScrapeOptions
from joulescore.proxy.ledger import Ledger


def _series(*samples: tuple[float, float]) -> CounterSeries:
    s = CounterSeries("c{}", "c", {}, Domain.GPU, 1.0)
    for t, v in samples:
        s.add(t, v)
    return s


def test_a_counter_is_interpolated_between_samples_and_extrapolated_past_the_newest() -> None:
    s = _series((10.0, 500.0), (12.0, 700.0), (14.0, 900.0))
    assert s.at(9.0) == 0.0 and s.at(11.0) == pytest.approx(100.0) and s.at(13.5) == pytest.approx(350.0)
    assert s.at(15.0) == pytest.approx(500.0)  # 100 W past the newest sample, until a newer one comes
    s.vanished = True
    assert s.at(15.0) == pytest.approx(400.0)  # a vanished series stops counting
    assert s.resolution_s() == pytest.approx(2.0)


def test_a_reset_or_wrap_is_bridged_at_the_previous_rate() -> None:
    s = _series((0.0, 50.0), (1.0, 60.0), (2.0, 70.0), (3.0, 4.0), (4.0, 14.0))  # a wrap (or restart) after 70
    assert s.breaks == 1 and s.at(4.0) == pytest.approx(40.0)
    first = _series((0.0, 50.0), (1.0, 5.0))  # no rate before the break yet: counted from zero
    assert first.at(1.0) == pytest.approx(5.0)


def test_a_repeated_value_shows_the_exporters_own_interval() -> None:
    s = _series(*((float(t), float(t // 3) * 30.0) for t in range(12)))  # polled every 1 s, changing every 3 s
    assert s.resolution_s() == pytest.approx(3.0)


def test_selectors_match_as_prometheus_does() -> None:
    m = parse_selector('{pod="vllm-0", namespace=~"prod|canary",gpu!="1",x!~"a.*"}')
    assert m == [("pod", "=", "vllm-0"), ("namespace", "=~", "prod|canary"), ("gpu", "!=", "1"), ("x", "!~", "a.*")]
    assert matches({"pod": "vllm-0", "namespace": "canary", "gpu": "0"}, m)
    assert not matches({"pod": "vllm-0", "namespace": "dev"}, m)
    with pytest.raises(BadInput, match="is not a list of label matchers"):
        parse_selector("pod=vllm-0")


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter(dcgm(20.0, gpus=2) + kepler_pods(5.0, 10.0))
    yield e
    e.stop()


def _meter(**options: str) -> Meter:
    return select_meter("exporter", options=ScrapeOptions(**options))  # type: ignore[arg-type]


def test_exporter_series_that_vanish_or_appear_are_warnings_in_the_record(exporter: Exporter) -> None:
    meter = _meter(exporter_url=exporter.url, preset="dcgm")
    begin = meter.read()
    gone = exporter.counters.pop(1)  # GPU 1's series vanishes
    exporter.counters.append(Counter(gone.metric, {**gone.labels, "gpu": "2"}, 20.0))  # and GPU 2's appears
    time.sleep(0.3)
    end = meter.read()
    m = meter.measurement(begin, end)
    notes = m.provenance.notes
    assert any('gpu="1"' in n and "vanished mid-run" in n for n in notes)
    assert any('gpu="2"' in n and "appeared mid-run" in n for n in notes)
    assert m.energy_j[Domain.GPU] > 0


def test_exporter_errors_are_one_line(exporter: Exporter) -> None:
    cases = [
        ({"exporter_url": exporter.url, "preset": "kepler-pod"}, "where one was expected"),
        ({"exporter_url": exporter.url, "query": 'kepler_pod_cpu_joules_total{pod="nope"}'}, "has no series"),
        ({"exporter_url": exporter.url}, "give --preset"),
        ({"exporter_url": exporter.url, "preset": "dcgm", "query": "x"}, "not both"),
        ({"exporter_url": exporter.url, "preset": "nope"}, "unknown preset 'nope'"),
        ({"exporter_url": "http://127.0.0.1:9/metrics", "preset": "dcgm"}, "is unreachable"),
        ({"preset": "dcgm"}, "--meter exporter needs --exporter-url URL"),
    ]
    for options, fragment in cases:
        with pytest.raises(BadInput) as err:
            _meter(**options)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_kepler_pod_through_the_exporter_keeps_cpu_and_gpu_apart(exporter: Exporter) -> None:
    meter = _meter(exporter_url=exporter.url, preset="kepler-pod", selector='pod="vllm-0"')
    assert meter.domains() == {Domain.CPU, Domain.GPU}
    prov = meter.provenance()
    assert prov.kind == "measured" and "Kepler" in prov.domains["gpu"]["attribution"]


def test_an_exporter_stamping_old_samples_is_stale(exporter: Exporter) -> None:
    old = Exporter([])
    old.text = lambda now_s: (  # type: ignore[method-assign]
        f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"0\"}} 5 {int((now_s - 120) * 1000)}\n")
    try:
        with pytest.raises(BadInput, match="is stale, its newest sample is 120 s old"):
            _meter(exporter_url=old.url, preset="dcgm")
    finally:
        old.stop()


class LaggingMeter(Meter):
    """10 W on a settable clock, whose readings become final only when ``settled`` is moved past them:
    until then a reading is 20% high (an extrapolation)."""

    def __init__(self) -> None:
        self.now_s, self.settled = 0.0, -math.inf

    def provenance(self) -> Provenance:
        return Provenance("measured", ("lagging",), ("gpu",), 0.0, domains={"gpu": {"kind": "measured"}})

    def read(self) -> Reading:
        return self._at(self.now_s, 1.2)

    def _at(self, t: float, factor: float) -> Reading:
        e = {Domain.GPU: 10.0 * t * factor}
        return Reading(t, e, dict(e), dict(e))

    def settled_until_s(self) -> float:
        return self.settled

    def revise(self, reading: Reading) -> Reading:
        return self._at(reading.timestamp_s, 1.0)


def test_the_ledger_settles_an_interval_once_the_meter_has_a_sample_past_it() -> None:
    meter = LaggingMeter()
    idle: list[float] = []
    settled: list[str] = []
    ledger = Ledger(meter, lambda t: settled.append(t.request_id), lambda e, s: idle.append(e.total_j))
    meter.now_s = 1.0
    ledger.start("a", streamed=False)
    assert idle == []  # [0, 1] s is idle, but not yet final
    meter.now_s = 3.0
    energy, final = ledger.end("a", 5, 5)
    assert not final and settled == []  # its interval ends past what the meter has settled
    meter.settled = 2.0
    meter.now_s = 4.0
    ledger.tick()
    assert idle == [pytest.approx(10.0)] and settled == []
    meter.settled = 10.0
    ledger.tick()
    assert settled == ["a"]
    last = ledger.close()
    assert sum(idle) + ledger.charged.total_j == pytest.approx(last.energy_j[Domain.GPU] -
                                                                ledger.first.energy_j[Domain.GPU])
    assert ledger.charged.total_j == pytest.approx(20.0)  # 10 W over its 2 s, from the final readings
