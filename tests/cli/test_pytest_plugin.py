"""The pytest plugin, run through ``pytester``: budgets, the summary table, save then compare.

Loaded with ``-p joulescore.pytest_plugin`` so these tests do not depend on the installed entry point; one
test checks that pyproject.toml declares it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import scipy.stats  # noqa: F401  (imported here once: pytester's in-process runs drop modules they import, and numpy cannot load twice)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (3.10: tomli ships with pytest's own dependencies there)
    import tomli as tomllib

pytest_plugins = ("pytester",)
PLUGIN = ("-p", "joulescore.pytest_plugin", "-p", "no:cacheprovider")
REPO = Path(__file__).resolve().parents[2]

#: a test file whose work is ``WORK`` x 100 ms of one core's pure-Python loop, metered in 3 rounds
WORK_TESTS = """
import os, time
import pytest

def busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(i * i for i in range(1000))

def test_work(energy):
    for _ in energy(rounds=3):
        busy(0.1 * float(os.environ["WORK"]))
"""


def test_a_budget_exceeded_fails_with_the_joules_in_the_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_budget="""
import time
import pytest

def busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

@pytest.mark.energy_budget(j=1e-6)
def test_over(energy):
    with energy() as e:
        busy(0.1)
    assert e.energy_j > 0 and e.kind in ("measured", "estimated", "mixed")

@pytest.mark.energy_budget(j=1e9)
def test_within(energy):
    result = energy(lambda: busy(0.02), rounds=3)
    assert len(result.rounds) == 3 and result.interval_j() is not None
""")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*energy budget exceeded: * J (estimated, *band +/-*) > 1e-06 J*"])
    # the summary table: a row per metered test, J, W, s, rounds and whether measured or estimated
    result.stdout.fnmatch_lines(["*energy (joulescore)*", "test *J*W*s*rounds*kind",
                                 "*test_budget.py::test_over*1*estimated", "*test_within*+/-*3*estimated"])


def test_save_then_compare_fails_on_a_planted_regression(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_work=WORK_TESTS)
    monkeypatch.setenv("WORK", "1")
    saved = pytester.runpytest(*PLUGIN, "--energy-save", "base")
    saved.assert_outcomes(passed=1)
    path = pytester.path / ".joulescore-energy" / "base.json"
    data = json.loads(path.read_text())["tests"]["test_work.py::test_work"]
    assert data["rounds"] == 3 and data["low_j"] is not None
    same = pytester.runpytest(*PLUGIN, "--energy-compare", "base", "--energy-fail", "100%")
    same.assert_outcomes(passed=1)
    monkeypatch.setenv("WORK", "4")
    worse = pytester.runpytest(*PLUGIN, "--energy-compare", "base", "--energy-fail", "10%")
    worse.assert_outcomes(failed=1)
    worse.stdout.fnmatch_lines(["*energy regression: * J (estimated*) vs * J saved, +*% on the lower bound of "
                                "its 95% interval, more than the 10% allowed*"])


def test_the_plugin_is_inert_unless_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
    assert "energy (joulescore)" not in result.stdout.str()
    assert not (pytester.path / ".joulescore-energy").exists()


def test_a_missing_saved_result_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    result = pytester.runpytest(*PLUGIN, "--energy-compare", "nothing-saved")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--energy-compare nothing-saved: cannot read*"])


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["pytest11"] == {"joulescore.pytest_plugin": "joulescore.pytest_plugin"}
