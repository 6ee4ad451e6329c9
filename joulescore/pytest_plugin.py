"""pytest plugin: meter a block of a test, give it an energy budget, and catch energy regressions.

Registered through the ``pytest11`` entry point and inert unless used: nothing is metered, printed or written
until a test asks for the ``energy`` fixture or a flag below is given.

    def test_generate(energy):
        with energy() as e:                 # one metered block
            model.generate(...)
        for _ in energy(rounds=5):          # five metered rounds: a mean and a 95% interval
            model.generate(...)

    @pytest.mark.energy_budget(j=50)        # fail when the block's mean spends more than 50 J
    def test_small(energy): ...

``--energy-save NAME`` writes each metered test's result to a JSON file; ``--energy-compare NAME
--energy-fail 10%`` fails the tests whose energy rose by more than 10%, judged on the lower bound of the
new interval (a one-round block, which has no interval, on its point).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from joulescore.meters.base import Measurement, Meter, Reading

#: where a saved NAME goes when it is not a path ending in .json
SAVE_DIR = ".joulescore-energy"
_STATE = pytest.StashKey["EnergyState"]()
_RESULTS = pytest.StashKey[list["EnergyResult"]]()
_SAVED = pytest.StashKey[dict[str, Any]]()
_FAIL = pytest.StashKey[float]()


@dataclass
class EnergyResult:
    """One metered block: each round's measurement, and their mean with a 95% interval."""

    rounds: list[Measurement] = field(default_factory=list)

    @property
    def per_round_j(self) -> list[float]:
        return [m.total_j for m in self.rounds]

    @property
    def energy_j(self) -> float:
        return statistics.fmean(self.per_round_j) if self.rounds else math.nan

    @property
    def duration_s(self) -> float:
        return statistics.fmean(m.duration_s for m in self.rounds) if self.rounds else math.nan

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def domains_j(self) -> dict[str, float]:
        """Mean joules per domain (cpu, dram, gpu, ...) over the rounds."""
        keys = {d for m in self.rounds for d in m.energy_j}
        return {d.value: statistics.fmean(m.energy_j.get(d, 0.0) for m in self.rounds) for d in keys}

    @property
    def kind(self) -> str:
        return self.rounds[0].provenance.kind if self.rounds else "n/a"

    @property
    def meter(self) -> str:
        return ", ".join(self.rounds[0].provenance.sources) if self.rounds else "n/a"

    @property
    def band_pct(self) -> float | None:
        return self.rounds[0].provenance.uncertainty_pct if self.rounds else None

    def interval_j(self) -> tuple[float, float] | None:
        """The 95% t-interval of the rounds' mean (None below two rounds)."""
        values = self.per_round_j
        if len(values) < 2:
            return None
        from scipy.stats import t as student_t

        half = float(student_t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
        return self.energy_j - half, self.energy_j + half

    def as_dict(self) -> dict[str, Any]:
        iv = self.interval_j()
        return {"energy_j": self.energy_j, "low_j": iv[0] if iv else None, "high_j": iv[1] if iv else None,
                "rounds": len(self.rounds), "per_round_j": self.per_round_j, "duration_s": self.duration_s,
                "power_w": self.power_w, "domains_j": self.domains_j, "kind": self.kind, "meter": self.meter,
                "band_pct": self.band_pct}

    def describe(self) -> str:
        band = "" if self.band_pct is None or self.kind == "measured" else f", band +/-{self.band_pct:g}%"
        return f"{self.energy_j:.4g} J ({self.kind}, {self.meter}{band})"


class EnergyState:
    """The session's meter (chosen and started on first use) and what each test metered."""

    def __init__(self, meter_name: str) -> None:
        self.meter_name = meter_name
        self._meter: Meter | None = None
        self.by_test: dict[str, list[EnergyResult]] = {}

    @property
    def meter(self) -> Meter:
        if self._meter is None:
            from joulescore.meters import select_meter

            self._meter = select_meter(self.meter_name)
            self._meter.start()
        return self._meter

    def close(self) -> None:
        if self._meter is not None:
            self._meter.stop()


class Block:
    """``with energy() as e:`` meters the body once; ``for _ in energy(rounds=5):`` meters each round."""

    def __init__(self, meter: Meter, rounds: int, result: EnergyResult) -> None:
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        self._meter, self._rounds, self.result = meter, rounds, result
        self._begin: Reading | None = None

    def __enter__(self) -> EnergyResult:
        if self._rounds != 1:
            raise ValueError("a with block runs once: use `for _ in energy(rounds=N):` or energy(fn, rounds=N)")
        self._begin = self._meter.read()
        return self.result

    def __exit__(self, *exc: object) -> None:
        assert self._begin is not None
        self.result.rounds.append(self._meter.measurement(self._begin, self._meter.read(), "block"))

    def __iter__(self) -> Iterator[int]:
        for n in range(self._rounds):
            begin = self._meter.read()
            yield n
            self.result.rounds.append(self._meter.measurement(begin, self._meter.read(), f"round {n}"))


class Energy:
    """The ``energy`` fixture: each call starts one metered block of the test."""

    def __init__(self, state: EnergyState, results: list[EnergyResult]) -> None:
        self._state, self.results = state, results

    def __call__(self, fn: Callable[[], Any] | None = None, rounds: int = 1) -> Any:
        result = EnergyResult()
        self.results.append(result)
        block = Block(self._state.meter, rounds, result)
        if fn is None:
            return block
        for _ in block:
            fn()
        return result


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("joulescore", "energy (joulescore)")
    group.addoption("--energy-meter", default="auto", help="energy source for the energy fixture (default: auto)")
    group.addoption("--energy-save", metavar="NAME", help="write the metered tests' energy to NAME (.json)")
    group.addoption("--energy-compare", metavar="NAME", help="compare the metered tests with a saved NAME")
    group.addoption("--energy-fail", metavar="PCT", default="10%",
                    help="with --energy-compare: fail a test whose energy rose by more than this (default 10%%)")


def _saved_path(config: pytest.Config, name: str) -> Path:
    path = Path(name)
    return path if path.suffix == ".json" else config.rootpath / SAVE_DIR / f"{name}.json"


def _fail_share(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1000.0:
        raise pytest.UsageError(f"--energy-fail must be a percentage such as 10%, got {text!r}")
    return value / 100.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "energy_budget(j): fail the test when its metered block spends more "
                                       "than j joules (the mean over rounds)")
    config.stash[_STATE] = EnergyState(config.getoption("--energy-meter"))
    compare = config.getoption("--energy-compare")
    if compare:
        path = _saved_path(config, compare)
        try:
            config.stash[_SAVED] = json.loads(path.read_text(encoding="utf-8"))["tests"]
        except (OSError, ValueError, KeyError) as exc:
            raise pytest.UsageError(f"--energy-compare {compare}: cannot read {path}: {exc}") from None
        config.stash[_FAIL] = _fail_share(config.getoption("--energy-fail"))


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> Energy:
    """Meter blocks of this test with the best energy meter on the machine (``--energy-meter`` to choose)."""
    results = request.node.stash.setdefault(_RESULTS, [])
    state = request.config.stash[_STATE]
    state.by_test[request.node.nodeid] = results
    return Energy(state, results)


def _budget_failure(item: pytest.Item, results: list[EnergyResult]) -> str | None:
    marker = item.get_closest_marker("energy_budget")
    if marker is None:
        return None
    budget_j = float(marker.kwargs.get("j", marker.args[0] if marker.args else math.inf))
    for result in results:
        if result.energy_j > budget_j:
            return f"energy budget exceeded: {result.describe()} > {budget_j:g} J"
    return None


def _regression(item: pytest.Item, results: list[EnergyResult]) -> str | None:
    saved = item.config.stash.get(_SAVED, None)
    if saved is None or item.nodeid not in saved or not results:
        return None
    old_j, fail = float(saved[item.nodeid]["energy_j"]), item.config.stash[_FAIL]
    now = results[-1]
    iv = now.interval_j()
    judged = iv[0] if iv else now.energy_j
    if old_j > 0 and judged > old_j * (1 + fail):
        where = "the lower bound of its 95% interval" if iv else "its point (one round: no interval)"
        return (f"energy regression: {now.describe()} vs {old_j:.4g} J saved, {judged / old_j - 1:+.1%} on "
                f"{where}, more than the {fail:.0%} allowed")
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    results = item.stash.get(_RESULTS, [])
    message = _budget_failure(item, results) or _regression(item, results)
    if message:
        pytest.fail(message, pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash[_STATE]
    metered = {k: v for k, v in state.by_test.items() if v and v[-1].rounds}
    if not metered:
        return
    write = terminalreporter.write_line
    terminalreporter.section("energy (joulescore)")
    write(f"{'test':<50} {'J':>10} {'W':>8} {'s':>8} {'rounds':>6}  kind")
    for nodeid, results in metered.items():
        r = results[-1]
        iv = r.interval_j()
        j = f"{r.energy_j:.4g}" + ("" if iv is None else f" +/-{(iv[1] - iv[0]) / 2:.2g}")
        write(f"{nodeid[-50:]:<50} {j:>10} {r.power_w:>8.3g} {r.duration_s:>8.3g} {len(r.rounds):>6}  {r.kind}")
    name = config.getoption("--energy-save")
    if name:
        path = _saved_path(config, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"tests": {k: v[-1].as_dict() for k, v in metered.items()}}, indent=2),
                        encoding="utf-8")
        write(f"energy saved to {path}")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()
