"""A NAS-FPN stage as data: the merge cells in order, each with its combine function, two inputs,
output level, output conv and whether it is one of the stage's outputs (docs/family.md#the-
pyramid-as-data).

The authors' reference describes the searched pyramid the same way (a list of block specs: level,
combine function, two input nodes, output flag). A stage's inputs are the nodes p3..p7 (the levels
P3..P7 it receives); each cell makes one new node, named by `name`, which later cells may take as
input. Exactly one output-flagged cell per level 3..7 gives the stage's outputs P3..P7.

The release's stage (`RELEASE_STAGE`, Ghiasi et al. 2019, fig. 7) is the default; its cells'
order is the checkpoint's (`fpn_stages.<stage>.<index>`), so the parameter names follow the table.
Plain Python: nothing here imports MindSpore.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import yaml

from nasfpn.core.errors import UserError

STAGE_INPUTS = ("p3", "p4", "p5", "p6", "p7")
INPUT_LEVELS = {"p3": 3, "p4": 4, "p5": 5, "p6": 6, "p7": 7}
LEVELS = (3, 4, 5, 6, 7)
COMBINES = ("sum", "attention")
SPEC_KEYS = ("name", "combine", "inputs", "level", "output_conv", "is_output")


class PyramidSpecError(UserError):
    """A pyramid spec (a --fpn_spec file or a model file's spec) that does not describe a stage."""


@dataclass(frozen=True)
class MergeCellSpec:
    """One merge cell: resize `inputs` to `level`, combine them (`sum`: a + b; `attention`: global
    attention from the second input, b + sigmoid(mean_hw(b)) * a), then optionally ReLU-conv-BN."""

    name: str
    combine: str
    inputs: tuple
    level: int
    output_conv: bool
    is_output: bool = False


def _cell(name, combine, a, b, level, output_conv, is_output=False):
    return MergeCellSpec(name, combine, (a, b), level, output_conv, is_output)


RELEASE_STAGE = (
    _cell("p4_1", "attention", "p6", "p4", 4, True),
    _cell("p4_2", "sum", "p4_1", "p4", 4, True),
    _cell("p3_out", "sum", "p4_2", "p3", 3, True, is_output=True),
    _cell("p4_out", "sum", "p3_out", "p4_2", 4, True, is_output=True),
    _cell("p5_tmp", "attention", "p4_out", "p3_out", 5, False),
    _cell("p5_out", "sum", "p5", "p5_tmp", 5, True, is_output=True),
    _cell("p7_tmp", "attention", "p5_out", "p4_2", 7, False),
    _cell("p7_out", "sum", "p7", "p7_tmp", 7, True, is_output=True),
    _cell("p6_out", "attention", "p7_out", "p5_out", 6, True, is_output=True),
)


@dataclass(frozen=True)
class StageWiring:
    """What a stage needs at run time, as static ints (graph mode unrolls the loop over cells):
    per cell the positions of its two inputs among the nodes made so far (the stage inputs first,
    then each cell's node in order), and the positions of the outputs P3..P7."""

    inputs: tuple
    outputs: tuple


def node_levels(spec) -> dict:
    """Every node's level: the stage inputs and each cell's node."""
    levels = dict(INPUT_LEVELS)
    levels.update({cell.name: cell.level for cell in spec})
    return levels


def cell_labels(spec) -> tuple:
    """mmdetection's names of the cells: type_<input levels>_<output level> (e.g. gp_64_4)."""
    levels = node_levels(spec)
    return tuple(
        f"{'gp' if c.combine == 'attention' else 'sum'}_{levels[c.inputs[0]]}{levels[c.inputs[1]]}_{c.level}"
        for c in spec
    )


def stage_wiring(spec, source: str = "the pyramid spec") -> StageWiring:
    """Checks `spec` (PyramidSpecError naming `source`, the cell and what is wrong) and returns
    its wiring: inputs exist before the cell that takes them, levels in 3..7, names unique, one
    output per level."""
    if not spec:
        raise PyramidSpecError(f"{source}: a stage needs at least one merge cell")
    nodes = list(STAGE_INPUTS)
    wiring = []
    for index, cell in enumerate(spec):
        where = f"{source}: cell {index} ({cell.name})"
        if cell.combine not in COMBINES:
            raise PyramidSpecError(f"{where}: combine must be one of {list(COMBINES)}, got {cell.combine!r}")
        if cell.level not in LEVELS:
            raise PyramidSpecError(f"{where}: level must be one of {list(LEVELS)}, got {cell.level!r}")
        if len(cell.inputs) != 2:
            raise PyramidSpecError(f"{where}: expected two inputs, got {list(cell.inputs)}")
        for node in cell.inputs:
            if node not in nodes:
                raise PyramidSpecError(
                    f"{where}: input {node!r} is not made before it (known: {', '.join(nodes)})"
                )
        if cell.name in nodes:
            raise PyramidSpecError(f"{where}: the name {cell.name!r} is already a node of the stage")
        wiring.append(tuple(nodes.index(node) for node in cell.inputs))
        nodes.append(cell.name)
    outputs = {}
    for cell in spec:
        if cell.is_output:
            if cell.level in outputs:
                raise PyramidSpecError(
                    f"{source}: two outputs of level {cell.level} ({outputs[cell.level]}, {cell.name})"
                )
            outputs[cell.level] = cell.name
    missing = [level for level in LEVELS if level not in outputs]
    if missing:
        raise PyramidSpecError(
            f"{source}: no output cell of level {', '.join(map(str, missing))} "
            f"(mark one cell of each level 3..7 with is_output: true)"
        )
    return StageWiring(tuple(wiring), tuple(nodes.index(outputs[level]) for level in LEVELS))


def with_combine(spec, combine: str):
    """`spec` with every cell's combine function replaced (`sum`: the sum-only pyramid of the
    authors' reference; the cells keep their parameters, so the checkpoint's names are unchanged)."""
    return tuple(MergeCellSpec(c.name, combine, c.inputs, c.level, c.output_conv, c.is_output) for c in spec)


def spec_to_plain(spec) -> list:
    """JSON/YAML-ready form: a list of dicts with SPEC_KEYS."""
    return [{**asdict(cell), "inputs": list(cell.inputs)} for cell in spec]


def spec_from_plain(cells, source: str) -> tuple:
    """The inverse of spec_to_plain, with one-line errors naming `source` and the cell."""
    if not isinstance(cells, list):
        raise PyramidSpecError(f"{source}: expected a list of merge cells, got {type(cells).__name__}")
    spec = []
    for index, cell in enumerate(cells):
        where = f"{source}: cell {index}"
        if not isinstance(cell, dict):
            raise PyramidSpecError(f"{where}: expected a mapping with keys {list(SPEC_KEYS)}, got {cell!r}")
        unknown = sorted(set(cell) - set(SPEC_KEYS))
        missing = [k for k in SPEC_KEYS[:-1] if k not in cell]
        if unknown or missing:
            raise PyramidSpecError(
                f"{where}: "
                + "; ".join(
                    ([f"unknown keys {unknown}"] if unknown else [])
                    + ([f"missing keys {missing}"] if missing else [])
                )
                + f" (keys: {list(SPEC_KEYS)}; is_output is optional)"
            )
        inputs = cell["inputs"]
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs):
            raise PyramidSpecError(f"{where}: inputs must be a list of two node names, got {inputs!r}")
        for key in ("output_conv", "is_output"):
            if not isinstance(cell.get(key, False), bool):
                raise PyramidSpecError(f"{where}: {key} must be true or false, got {cell[key]!r}")
        if not isinstance(cell["level"], int) or isinstance(cell["level"], bool):
            raise PyramidSpecError(f"{where}: level must be an integer 3..7, got {cell['level']!r}")
        spec.append(
            MergeCellSpec(
                str(cell["name"]),
                cell["combine"],
                tuple(inputs),
                cell["level"],
                cell["output_conv"],
                cell.get("is_output", False),
            )
        )
    spec = tuple(spec)
    stage_wiring(spec, source)
    return spec


def load_pyramid_spec(path: str) -> tuple:
    """A stage spec from a YAML file: `cells:` a list of mappings with SPEC_KEYS (see
    configs/pyramid_release.yaml)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise PyramidSpecError(f"--fpn_spec: {path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise PyramidSpecError(
            f"--fpn_spec: {path}: cannot be read as YAML ({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict) or "cells" not in data:
        raise PyramidSpecError(f"--fpn_spec: {path}: expected a mapping with a 'cells' list")
    return spec_from_plain(data["cells"], f"--fpn_spec: {path}")


def resolve_pyramid_spec(value) -> tuple:
    """The config value of fpn_spec -> a checked spec: null or "" = the release's stage, a str = a
    YAML file, a list = the cells inline (as a model file stores them)."""
    if value is None or value == "":
        return RELEASE_STAGE
    if isinstance(value, str):
        return load_pyramid_spec(value)
    return spec_from_plain(value, "fpn_spec")
