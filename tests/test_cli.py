"""The `nasfpn` command (nasfpn/cli.py) and the root scripts over the same commands: the same
--help texts, options, one-line errors and exit statuses; the package imports lightly."""

import ast
import os
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.cli import assert_one_line_error, run_command, run_script

# The release's root scripts and the `nasfpn` command that runs the same (nasfpn/commands/).
SCRIPTS = {
    "train": "train.py",
    "eval": "eval.py",
    "export": "export.py",
    "infer": "infer.py",
    "convert": "create_data.py",
    "postprocess": "postprocess.py",
    "infer_310_twin": "infer_310_twin.py",
}


def nasfpn_command(*args, cwd=REPO_ROOT):
    return run_command([sys.executable, "-m", "nasfpn", *args], cwd=cwd)


def docstring_of(path):
    with open(path, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read()), clean=False)


def test_the_commands_are_the_release_scripts_and_the_browser():
    from nasfpn.cli import COMMANDS

    assert [c.name for c in COMMANDS if c.script.endswith(".py")] == list(SCRIPTS)
    assert {c.name: c.script for c in COMMANDS if c.name in SCRIPTS} == SCRIPTS
    assert [c.name for c in COMMANDS if c.name not in SCRIPTS] == ["browse"]


@pytest.mark.parametrize("command, script", SCRIPTS.items())
def test_a_root_script_keeps_the_docstring_of_its_command(command, script):
    """The root script is a shim whose docstring is its --help text (python train.py --help); the
    command module's is `nasfpn train --help`'s. One text: they must not drift apart."""
    package_doc = docstring_of(os.path.join(REPO_ROOT, "nasfpn", "commands", f"{command}.py"))
    assert docstring_of(os.path.join(REPO_ROOT, script)) == package_doc


def test_help_lists_every_command_without_importing_mindspore():
    run = nasfpn_command("--help")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "usage: nasfpn <command> [--config_path=FILE] [--key=value ...]" in lines
    for command, script in {**SCRIPTS, "browse": "-m nasfpn.data.browse"}.items():
        assert any(line.split()[:1] == [command] and f" python {script} " in line for line in lines), command
    probe = run_command(
        [
            sys.executable,
            "-c",
            "import sys, nasfpn.cli; nasfpn.cli.overview(); print('mindspore' in sys.modules)",
        ]
    )
    assert probe.stdout.strip() == "False", probe.stderr


@pytest.mark.parametrize("command", [*SCRIPTS, "browse"])
def test_command_help_names_the_command_and_prints_its_docstring(command, capsys):
    from nasfpn.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"usage: nasfpn {command} [--config_path=FILE] [--key=value ...]"
    module = "nasfpn/data/browse.py" if command == "browse" else f"nasfpn/commands/{command}.py"
    assert lines[2] == docstring_of(os.path.join(REPO_ROOT, module)).strip().splitlines()[0]
    assert "  --device_target (default: CPU; one of Ascend, GPU, CPU)" in lines


def test_script_help_still_names_the_script():
    """`python infer.py --help` after `nasfpn infer --help` in one process: the command's name
    does not stick (nasfpn/config/flat.py:running_as)."""
    from nasfpn.cli import main
    from nasfpn.config.flat import running_program

    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert not running_program()[0].startswith("nasfpn")


@pytest.mark.parametrize(
    "args, status, fragment",
    [
        (["evl"], 2, "unknown command 'evl': expected one of train, eval, export"),
        (["nonsense"], 2, "unknown command 'nonsense'"),
        (["eval", "--no_such_key=1"], 2, "unknown config key 'no_such_key'"),
        (["infer", "--image=/no/such/*.jpg", "--checkpoint_path=x.ckpt"], 2, "no image files found"),
    ],
)
def test_errors_are_one_line_with_the_scripts_status(args, status, fragment, tmp_path):
    run = nasfpn_command(*args, cwd=tmp_path)
    assert_one_line_error(run, status, fragment)
    if args[0] in SCRIPTS:  # the root script says exactly the same
        script = run_script(SCRIPTS[args[0]], (), args[1:], cwd=tmp_path)
        assert (script.returncode, script.stderr) == (run.returncode, run.stderr)


def test_no_command_prints_the_usage_and_fails(tmp_path):
    run = nasfpn_command(cwd=tmp_path)
    assert run.returncode == 2 and "usage: nasfpn <command>" in run.stderr


def test_the_release_alias_create_data_is_convert(capsys):
    from nasfpn.cli import find_command

    assert find_command("create_data").name == "convert"


def test_version_is_the_packages():
    import nasfpn

    run = nasfpn_command("--version")
    assert (run.returncode, run.stdout.strip()) == (0, f"nasfpn {nasfpn.__version__}")


def test_the_package_imports_lightly_and_its_api_on_first_use():
    """`import nasfpn.core.errors` (or nasfpn) does not import MindSpore; nasfpn.Detector is
    nasfpn.api.Detector, looked up when first named (PEP 562)."""
    code = (
        "import sys, nasfpn, nasfpn.core.errors\n"
        "light = 'mindspore' not in sys.modules and 'nasfpn.api' not in sys.modules\n"
        "from nasfpn import Detector, evaluate, export\n"
        "import nasfpn.api\n"
        "print(light, Detector is nasfpn.api.Detector, export is nasfpn.api.export, 'Detector' in dir(nasfpn))\n"
        "try:\n    nasfpn.Detecter\nexcept AttributeError as exc:\n    print(exc)\n"
    )
    run = run_command([sys.executable, "-c", code])
    assert run.stdout.splitlines() == [
        "True True True True",
        "module 'nasfpn' has no attribute 'Detecter'",
    ], run.stderr
