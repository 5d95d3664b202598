"""The `nasfpn` command (installed by `pip install .`; `python -m nasfpn` in a checkout):

    nasfpn <command> [--config_path=FILE] [--key=value ...]
    nasfpn <command> --help          the command's text and options
    nasfpn --help | --version

Each command takes exactly the options of the release's root script that does the same (the table
below) and ends the same way: the exit statuses of nasfpn/core/exits.py, one `error: ...` line for
a user error, the ModelArts flow with --enable_modelarts=True. Both run nasfpn/commands/<module>.py.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

from nasfpn.config.flat import load_config, running_as
from nasfpn.core.errors import UserError
from nasfpn.core.exits import EXIT_OK, EXIT_USER_ERROR, exit_status_ok, run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry


@dataclass(frozen=True)
class Command:
    """`nasfpn <name>`: `module` holds run(cfg), its --help text (the docstring) and, where the
    status says more than 0, exit_status(result); `script` runs the same from a checkout."""

    name: str
    module: str
    script: str
    modelarts: bool = True  # inside nasfpn/jobs/modelarts.py:modelarts_job, as the script runs


COMMANDS = (
    Command("train", "nasfpn.commands.train", "train.py"),
    Command("eval", "nasfpn.commands.eval", "eval.py"),
    Command("export", "nasfpn.commands.export", "export.py"),
    Command("infer", "nasfpn.commands.infer", "infer.py"),
    Command("convert", "nasfpn.commands.convert", "create_data.py"),
    Command("browse", "nasfpn.data.browse", "python -m nasfpn.data.browse", modelarts=False),
    Command("postprocess", "nasfpn.commands.postprocess", "postprocess.py"),
    Command("infer_310_twin", "nasfpn.commands.infer_310_twin", "infer_310_twin.py"),
)
BY_NAME = {command.name: command for command in COMMANDS}
ALIASES = {"create_data": "convert"}  # the release's script name


def find_command(name: str) -> Command:
    """The command called `name` (or its alias); UserError naming the commands otherwise."""
    name = ALIASES.get(name, name)
    if name in BY_NAME:
        return BY_NAME[name]
    close = difflib.get_close_matches(name, list(BY_NAME), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UserError(f"unknown command {name!r}: expected one of {', '.join(BY_NAME)}{hint}")


def summary_line(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def overview() -> str:
    """`nasfpn --help`: the usage and one line per command."""
    import nasfpn

    lines = [
        f"nasfpn {nasfpn.__version__}: NAS-FPN (RetinaNet) on MindSpore",
        "",
        "usage: nasfpn <command> [--config_path=FILE] [--key=value ...]",
        "       nasfpn <command> --help",
        "",
        "commands (each runs what the script beside it runs, with the same options):",
    ]
    for command in COMMANDS:
        module = importlib.import_module(command.module)
        script = command.script if " " in command.script else f"python {command.script}"
        lines.append(f"  {command.name:<15} {script:<29} {summary_line(module)}")
    lines += ["", "Python API: from nasfpn import Detector, evaluate, export (README.md)."]
    return "\n".join(lines)


def command_entry(command: Command, module: ModuleType) -> Callable[[Sequence[str]], Any]:
    """argv -> the command's result: the Config parsed from argv, then module.run(cfg)."""
    if command.modelarts:
        entry: Callable[[Sequence[str]], Any] = modelarts_entry(module.run)
        return entry
    return lambda argv: module.run(load_config(argv))


def run_command(command: Command, argv: Sequence[str]) -> None:
    """Run `command` on its options and exit as its script exits (never returns)."""
    module = importlib.import_module(command.module)
    entry = command_entry(command, module)
    with running_as(f"nasfpn {command.name}", module.__doc__ or ""):
        run_entry_point(lambda: entry(list(argv)), getattr(module, "exit_status", exit_status_ok))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The console script: `nasfpn <command> ...` (module docstring). Exits; never returns."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(overview(), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    if args[0] in ("-h", "--help", "help"):
        print(overview())
        sys.exit(EXIT_OK)
    if args[0] == "--version":
        import nasfpn

        print(f"nasfpn {nasfpn.__version__}")
        sys.exit(EXIT_OK)
    try:
        command = find_command(args[0])
    except UserError as exc:  # as run_entry_point reports a user error
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    run_command(command, args[1:])
