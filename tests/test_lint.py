"""The habits of the field, run by the suite: ruff's lint and format (settings in pyproject.toml)
over the whole tree, and mypy over the public API (pyproject.toml [tool.mypy] files). The tools'
versions are pinned in requirements-lint.txt (scripts/run_tests.sh installs it): another version
formats differently, so it is refused with what to run, and an absent tool skips with the reason."""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def pinned_versions():
    pins = {}
    with open(os.path.join(REPO_ROOT, "requirements-lint.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                pins[name] = version
    return pins


def require_tool(name):
    """Skip when `name` is not installed; fail when it is not the pinned version."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements-lint.txt)")
    installed, pinned = importlib.metadata.version(name), pinned_versions()[name]
    assert installed == pinned, (
        f"{name} {installed} is installed but requirements-lint.txt pins {pinned}: "
        "pip install -r requirements-lint.txt (scripts/run_tests.sh does)"
    )


def run_tool(*args):
    # --no-cache / a temporary cache: the tests write nothing into the checkout
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_finds_nothing_to_fix():
    require_tool("ruff")
    run = run_tool("ruff", "check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]


def test_the_tree_is_formatted_by_ruff():
    require_tool("ruff")
    run = run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert run.returncode == 0, "run `ruff format .`:\n" + run.stdout[-5000:] + run.stderr[-2000:]


@pytest.mark.slow
def test_the_public_api_type_checks(tmp_path):
    require_tool("mypy")
    run = run_tool("mypy", f"--cache-dir={tmp_path}")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert "nasfpn/api.py" not in run.stdout  # no notes either


def test_the_lint_pins_are_the_packages_lint_extra():
    import tomllib

    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        extra = tomllib.load(f)["project"]["optional-dependencies"]["lint"]
    assert sorted(extra) == sorted(f"{name}=={version}" for name, version in pinned_versions().items())
