"""Runs the mutmut 3 command line, crediting module- and session-scoped fixtures to every test that
uses them.

mutmut maps each mutated function to the tests that called it, but a fixture's setup runs inside
the first test that asks for it, so a detector built once per module would count only for that
first test, and a mutant in the building code would never meet the later tests that check the
built cells' values. Checked against mutmut 3.8.1 only (requirements-dev.txt).

(The package is nasfpn/, so mutmut's own module names - it drops only a leading "src." - are right
as they are; when the package was named src/ this launcher also replaced them.)
"""

import sys

import mutmut

PINNED = "3.8.1"
if mutmut.__version__ != PINNED:
    sys.exit(
        f"error: scripts/mutmut_run.py is written for mutmut {PINNED}, "
        f"found {mutmut.__version__}; install requirements-dev.txt"
    )

import pytest  # noqa: E402

import mutmut.__main__ as mutmut_main  # noqa: E402  (after the version check)
import mutmut.runners.harness as harness  # noqa: E402
from mutmut.state import state  # noqa: E402


class FixtureCallsToEveryUser:
    """Functions called while a fixture is set up are recorded for that fixture and added to the
    calls of every test that uses it (before mutmut's own teardown hook files them per test)."""

    def __init__(self):
        self.calls_by_fixture = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        outer = state()._stats
        state()._stats = set()
        try:
            yield
        finally:
            inner = state()._stats
            self.calls_by_fixture.setdefault(id(fixturedef), set()).update(inner)
            outer |= inner
            state()._stats = outer

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item, nextitem):
        for definitions in item._fixtureinfo.name2fixturedefs.values():
            for fixturedef in definitions:
                state()._stats |= self.calls_by_fixture.get(id(fixturedef), set())


_execute_pytest = harness.PytestRunner.execute_pytest


def execute_pytest_with_fixture_credit(self, params, **kwargs):
    if "plugins" in kwargs:  # only the stats run passes plugins (its StatsCollector)
        kwargs["plugins"] = [FixtureCallsToEveryUser()] + list(kwargs["plugins"])
    return _execute_pytest(self, params, **kwargs)


harness.PytestRunner.execute_pytest = execute_pytest_with_fixture_credit

if __name__ == "__main__":
    sys.exit(mutmut_main.cli())
