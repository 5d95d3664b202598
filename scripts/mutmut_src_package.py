"""Runs the mutmut 3 command line for a project whose package is literally named `src`.

mutmut 3 assumes the "src layout" (nasfpn/ is a folder holding packages) and drops a leading "src."
from module names: mutants of nasfpn/ops/boxes.py would be named boxes.x_..., never match the module
nasfpn.ops.boxes they run in, and every mutant would "survive". Here `src` is the package (the model-zoo
convention), so the two name functions below keep the prefix; they are the pinned version's own
code minus the stripping. Checked against mutmut 3.8.1 only (requirements-dev.txt).

It also credits module- and session-scoped fixtures to every test that uses them. mutmut maps each
mutated function to the tests that called it, but a fixture's setup runs inside the first test that
asks for it, so a detector built once per module would count only for that first test, and a mutant
in the building code would never meet the later tests that check the built cells' values.
"""

import os
import sys
from pathlib import Path

import mutmut

PINNED = "3.8.1"
if mutmut.__version__ != PINNED:
    sys.exit(
        f"error: scripts/mutmut_src_package.py is written for mutmut {PINNED}, "
        f"found {mutmut.__version__}; install requirements-dev.txt"
    )

import pytest  # noqa: E402

import mutmut.__main__ as mutmut_main  # noqa: E402  (after the version check)
import mutmut.runners.harness as harness  # noqa: E402
import mutmut.mutation.file_mutation as file_mutation  # noqa: E402
import mutmut.mutation.trampoline as trampoline  # noqa: E402
import mutmut.stats as stats  # noqa: E402
from mutmut.configuration import config  # noqa: E402
from mutmut.state import state  # noqa: E402


def mutant_name_keeping_src(relative_source_path: Path, mutant_method_name: str) -> str:
    module_name = str(relative_source_path)[: -len(relative_source_path.suffix)].replace(os.sep, ".")
    return f"{module_name}.{mutant_method_name}".replace(".__init__.", ".")


def record_hit_keeping_src(name, caller=None):
    # mutmut's version asserts that name has no "src." prefix; max_stack_depth stays -1 here.
    state()._stats.add(name)
    if caller is not None and config().track_dependencies:
        state().function_dependencies[name].add(caller)


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
file_mutation.get_mutant_name = mutant_name_keeping_src
mutmut_main.get_mutant_name = mutant_name_keeping_src
stats.record_trampoline_hit = record_hit_keeping_src
trampoline.record_trampoline_hit = record_hit_keeping_src

if __name__ == "__main__":
    sys.exit(mutmut_main.cli())
