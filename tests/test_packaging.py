"""The installable package (pyproject.toml): its wheel holds the library, its package data and the
`nasfpn` command, and runs from outside the checkout; its dependencies are requirements.txt's."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.cli import run_command

PACKAGE_DATA = ("nasfpn/config/default_config.yaml", "nasfpn/inference/hub_card.md")


def pyproject():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def requirement_lines(name):
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_the_dependencies_are_requirements_txt_less_the_test_runner():
    project = pyproject()["project"]
    runtime = [r for r in requirement_lines("requirements.txt") if not r.startswith("pytest")]
    assert project["dependencies"] == runtime
    assert project["optional-dependencies"]["test"] == [
        r for r in requirement_lines("requirements.txt") if r.startswith("pytest")
    ]
    assert project["optional-dependencies"]["openvino"] == requirement_lines("requirements-openvino.txt")


def test_the_root_files_of_the_release_layout_are_links_to_the_package_data():
    """One copy: default_config.yaml and hub/nasfpn.md at the root are the package's files."""
    for link, target in zip(("default_config.yaml", "hub/nasfpn.md"), PACKAGE_DATA):
        path = os.path.join(REPO_ROOT, link)
        assert os.path.islink(path), link
        assert os.path.realpath(path) == os.path.realpath(os.path.join(REPO_ROOT, target))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `pip install .` installs, built offline from a copy of the package's files (so
    the build leaves nothing in the checkout), and unpacked as site-packages would hold it."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO_ROOT, name), source / name)
    shutil.copytree(
        os.path.join(REPO_ROOT, "nasfpn"), source / "nasfpn", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        + ["-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode and "No module named" in build.stderr and "setuptools" in build.stderr:
        pytest.skip("setuptools is not installed: the wheel cannot be built offline")
    assert build.returncode == 0, build.stderr[-3000:]
    (path,) = dist.glob("nasfpn-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(path) as zf:
        zf.extractall(site)
        names = zf.namelist()
    return {"site": site, "names": names}


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_data_and_the_command(wheel):
    names = wheel["names"]
    assert set(PACKAGE_DATA) <= set(names)
    assert "nasfpn/api.py" in names and "nasfpn/commands/train.py" in names
    assert all(n.startswith(("nasfpn/", "nasfpn-")) for n in names), "only the package is installed"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = (wheel["site"] / entry_points).read_text()
    assert "[console_scripts]\nnasfpn = nasfpn.cli:main" in text


@pytest.mark.slow
def test_the_installed_package_runs_outside_the_checkout(wheel, tmp_path):
    """From another folder, with only the unpacked wheel on the path: the config and the hub card
    are found inside the package, --help works, and the API imports."""
    env = {"PYTHONPATH": str(wheel["site"])}
    code = (
        "import nasfpn, nasfpn.config.flat as flat\n"
        "from nasfpn.inference.hub import read_card\n"
        "from nasfpn import Detector\n"
        "print(nasfpn.__file__)\n"
        "print(flat.load_config([]).img_shape, read_card()['sha256'][:12], Detector.__name__)\n"
    )
    run = run_command([sys.executable, "-c", code], cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    where, values = run.stdout.splitlines()
    assert where.startswith(str(wheel["site"]))
    assert values == "[640, 640] baf3ce544edc Detector"
    run = run_command([sys.executable, "-m", "nasfpn", "eval", "--help"], cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[0] == "usage: nasfpn eval [--config_path=FILE] [--key=value ...]"
