"""Import directions inside nasfpn/: each module imports only its own layer and the layers below.

Every import is read with `ast`, the ones inside functions included (a function-local import is
still a dependency; it only hides it from a reader of the file's head). docs/architecture.md
quotes LAYERS.
"""

import ast
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "nasfpn"
SRC = os.path.join(REPO_ROOT, PACKAGE)

# Bottom to top. A key is a module or package directly under nasfpn/; a module may import any key
# of its own row or of the rows before it. The entry points' work (commands: train, eval, ...), then
# the top: the Python API, the `nasfpn` command and the package's public names (`__init__`).
LAYERS = (
    ("core", ("core",)),
    ("ops", ("ops",)),
    ("config", ("config",)),
    ("model files", ("model_files",)),
    ("data", ("data",)),
    ("model", ("model",)),
    ("inference", ("inference",)),
    ("training", ("training",)),
    ("evaluation", ("evaluation",)),
    ("deploy", ("deploy",)),
    ("jobs", ("jobs",)),
    ("commands", ("commands",)),
    ("api and console", ("api", "cli", "__main__", "__init__")),
)
RANK = {key: rank for rank, (_, keys) in enumerate(LAYERS) for key in keys}


def top_key(dotted):
    """'nasfpn.inference.runtimes' -> 'inference'; 'nasfpn' -> '__init__'; outside nasfpn/ -> None."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(source, module_name, is_package):
    """(line, dotted name) of every nasfpn module that `source` imports, anywhere in the file."""
    package = module_name if is_package else module_name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target == PACKAGE:  # `from .. import errors`: the names are the modules
                found += [(node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if top_key(name) is not None]


def upward_imports(source, module_name, is_package):
    """'<module>:<line> imports <name> (layer X above layer Y)' for each import of a higher layer;
    KeyError names a module or an imported key that LAYERS does not place."""
    own = RANK[top_key(module_name)]
    problems = []
    for line, name in imported_modules(source, module_name, is_package):
        rank = RANK[top_key(name)]
        if rank > own:
            problems.append(
                f"{module_name}:{line} imports {name} (layer {LAYERS[rank][0]} is above {LAYERS[own][0]})"
            )
    return problems


def src_modules():
    """(dotted name, is package, file path) of every .py file under nasfpn/."""
    modules = []
    for folder, _, names in os.walk(SRC):
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, REPO_ROOT)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            modules.append((".".join(parts[:-1] if is_package else parts), is_package, path))
    return modules


def test_every_module_has_a_layer():
    unplaced = sorted({top_key(name) for name, _, _ in src_modules()} - set(RANK))
    assert not unplaced, f"add {unplaced} to LAYERS in this file and to docs/architecture.md"


def test_no_module_imports_a_layer_above_its_own():
    problems = []
    for name, is_package, path in src_modules():
        with open(path, encoding="utf-8") as f:
            problems += upward_imports(f.read(), name, is_package)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f():\n    from ..deploy import export\n", "nasfpn.deploy"),
        ("from ..deploy.quantize import int8_model_path\n", "nasfpn.deploy.quantize"),
        ("import nasfpn.deploy.app310_twin\n", "nasfpn.deploy.app310_twin"),
    ],
)
def test_an_upward_import_in_evaluation_is_reported(source, expected):
    problems = upward_imports(source, "nasfpn.evaluation.scoring", is_package=False)
    assert problems == [
        f"nasfpn.evaluation.scoring:{source.count(chr(10))} imports {expected} "
        "(layer deploy is above evaluation)"
    ]


@pytest.mark.parametrize(
    "source, module_name, is_package",
    [
        (
            "from .. import core\nfrom ..inference.runtimes import run_padded\n",
            "nasfpn.evaluation.scoring",
            False,
        ),
        ("from . import detect_images\nfrom ..model import build_detector\n", "nasfpn.inference", True),
        ("from ..core.files import verify_sha256\n", "nasfpn.model_files.checkpoint", False),
        ("from nasfpn.ops.boxes import box_iou\n", "nasfpn.config.flat", False),
    ],
)
def test_imports_of_own_and_lower_layers_pass(source, module_name, is_package):
    assert upward_imports(source, module_name, is_package) == []


def test_core_importing_a_package_is_reported():
    assert upward_imports(
        "from ..inference.hub import read_card\n", "nasfpn.model_files.checkpoint", False
    ) == [
        "nasfpn.model_files.checkpoint:1 imports nasfpn.inference.hub (layer inference is above model files)"
    ]


def test_core_importing_config_is_reported():
    assert upward_imports("from nasfpn.config.flat import load_config\n", "nasfpn.core.exits", False) == [
        "nasfpn.core.exits:1 imports nasfpn.config.flat (layer config is above core)"
    ]


# docs/architecture.md quotes LAYERS (its layer table) and places every module (its module table).

ARCHITECTURE = os.path.join(REPO_ROOT, "docs", "architecture.md")


def markdown_table(text, header):
    """The rows (lists of cell texts) of the markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def documented_modules():
    """The modules a reader must find in the module table: every .py file under nasfpn/ but the
    __init__.py files that hold only their docstring."""
    paths = set()
    for _, _, path in src_modules():
        rel = os.path.relpath(path, REPO_ROOT).replace(os.sep, "/")
        if os.path.basename(path) == "__init__.py":
            with open(path, encoding="utf-8") as f:
                body = ast.parse(f.read()).body
            if all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body):
                continue
        paths.add(rel)
    return paths


def layer_of_path(rel):
    dotted = rel[: -len(".py")].replace("/", ".").removesuffix(".__init__")
    return LAYERS[RANK[top_key(dotted)]][0]


def test_the_architecture_layer_table_is_layers_bottom_to_top():
    with open(ARCHITECTURE, encoding="utf-8") as f:
        rows = markdown_table(f.read(), "| layer | folder |")

    def shown(key):
        folder = os.path.isdir(os.path.join(SRC, key))
        return f"`{PACKAGE}/{key}/`" if folder else f"`{PACKAGE}/{key}.py`"

    expected = [(name, ", ".join(shown(key) for key in keys)) for name, keys in LAYERS]
    assert [(row[0], row[1]) for row in rows] == expected


def test_the_architecture_module_table_places_every_module_in_its_layer_and_nothing_else():
    import re

    with open(ARCHITECTURE, encoding="utf-8") as f:
        rows = markdown_table(f.read(), "| module | layer |")
    listed, wrong_layer = [], []
    for row in rows:
        names = re.findall(r"`(nasfpn/[^`]+\.py)`", row[0])
        assert names, f"a row of the module table names no module: {row}"
        listed += names
        wrong_layer += [
            f"{n} is in {layer_of_path(n)}, not {row[1]}"
            for n in names
            if os.path.isfile(os.path.join(REPO_ROOT, n)) and layer_of_path(n) != row[1]
        ]
    duplicates = sorted({n for n in listed if listed.count(n) > 1})
    assert not duplicates, f"listed twice: {duplicates}"
    actual = documented_modules()
    assert sorted(actual - set(listed)) == [], "modules missing from docs/architecture.md's module table"
    assert sorted(set(listed) - actual) == [], "docs/architecture.md lists modules that do not exist"
    assert not wrong_layer, "\n".join(wrong_layer)
