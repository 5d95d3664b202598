"""The NAS-FPN neck: laterals on C3..C5, extra levels P6/P7, and stacked merge-cell stages."""

import mindspore.nn as nn

from nasfpn.model.layers import ConvBn
from nasfpn.model.merge_cells import NECK_BN_EPS, GlobalPoolingCell, SumCell

# One NAS-FPN stage (Ghiasi et al. 2019, fig. 7; docs/architecture.md#neck-nas-fpn-networkneck), in
# the checkpoint's order fpn_stages.<s>.<index>. Names as mmdetection's: type, input levels, output
# level. The cells are built from this table and `NasFpn.run_stage` walks it: the wiring is stated
# only here. (name, cell type, input a, input b, output, output level, has output conv)
STAGE_CELLS = (
    ("gp_64_4", GlobalPoolingCell, "p6", "p4", "p4_1", 4, True),
    ("sum_44_4", SumCell, "p4_1", "p4", "p4_2", 4, True),
    ("sum_43_3", SumCell, "p4_2", "p3", "p3_out", 3, True),
    ("sum_34_4", SumCell, "p3_out", "p4_2", "p4_out", 4, True),
    ("gp_43_5", GlobalPoolingCell, "p4_out", "p3_out", "p5_tmp", 5, False),
    ("sum_55_5", SumCell, "p5", "p5_tmp", "p5_out", 5, True),
    ("gp_54_7", GlobalPoolingCell, "p5_out", "p4_2", "p7_tmp", 7, False),
    ("sum_77_7", SumCell, "p7", "p7_tmp", "p7_out", 7, True),
    ("gp_75_6", GlobalPoolingCell, "p7_out", "p5_out", "p6_out", 6, True),
)
STAGE_INPUTS = ("p3", "p4", "p5", "p6", "p7")
STAGE_OUTPUTS = ("p3_out", "p4_out", "p5_out", "p6_out", "p7_out")
INPUT_LEVELS = {"p3": 3, "p4": 4, "p5": 5, "p6": 6, "p7": 7}


def _wiring(table, inputs):
    """Per cell, the positions of its two inputs in the list of maps computed so far (the stage
    inputs first, then each cell's output in table order). Static ints, so graph mode unrolls the
    stage loop; a name used before it is made is an error here, at build time."""
    available = list(inputs)
    wiring = []
    for name, _, a, b, out, _, _ in table:
        for source in (a, b):
            if source not in available:
                raise ValueError(f"NAS-FPN cell {name}: input {source} is not made before it")
        wiring.append((available.index(a), available.index(b)))
        available.append(out)
    return tuple(wiring)


STAGE_WIRING = _wiring(STAGE_CELLS, STAGE_INPUTS)
STAGE_OUTPUT_POSITIONS = tuple(
    len(STAGE_INPUTS) + [row[4] for row in STAGE_CELLS].index(name) for name in STAGE_OUTPUTS
)


class NasFpnStage(nn.CellList):
    """Nine merge cells in checkpoint order; `NasFpn.run_stage` wires them as STAGE_CELLS.

    (A CellList cannot have its own construct in graph mode, and a wrapper Cell would add a level to
    the parameter names, so the wiring lives in the neck.)"""

    def __init__(self, channels, bn_momentum):
        levels = dict(INPUT_LEVELS)
        cells = []
        for _, cell_type, a, b, out, out_level, with_conv in STAGE_CELLS:
            cells.append(cell_type(levels[a], levels[b], out_level, channels, with_conv, bn_momentum))
            levels[out] = out_level
        super().__init__(cells)


class NasFpn(nn.Cell):
    """(C3, C4, C5) -> (P3, P4, P5, P6, P7), each with `channels` channels."""

    def __init__(self, in_channels, channels, num_stages, bn_momentum):
        super().__init__()
        self.lateral_convs = nn.CellList([ConvBn(c, channels, NECK_BN_EPS, bn_momentum) for c in in_channels])
        # P6 from P5 and P7 from P6: 1x1 conv + BN, then 2x2/2 max-pool.
        self.extra_downsamples = nn.CellList(
            [
                nn.SequentialCell(
                    [
                        ConvBn(channels, channels, NECK_BN_EPS, bn_momentum),
                        nn.MaxPool2d(kernel_size=2, stride=2, pad_mode="same"),
                    ]
                )
                for _ in range(2)
            ]
        )
        self.fpn_stages = nn.CellList([NasFpnStage(channels, bn_momentum) for _ in range(num_stages)])

    def construct(self, c3, c4, c5):
        p3 = self.lateral_convs[0](c3)
        p4 = self.lateral_convs[1](c4)
        p5 = self.lateral_convs[2](c5)
        p6 = self.extra_downsamples[0](p5)
        p7 = self.extra_downsamples[1](p6)
        for stage in self.fpn_stages:
            p3, p4, p5, p6, p7 = self.run_stage(stage, p3, p4, p5, p6, p7)
        return p3, p4, p5, p6, p7

    @staticmethod
    def run_stage(cells, p3, p4, p5, p6, p7):
        """One stage: cells[i] takes the maps STAGE_WIRING[i] names; returns STAGE_OUTPUTS."""
        maps = [p3, p4, p5, p6, p7]
        for i, (a, b) in enumerate(STAGE_WIRING):
            maps.append(cells[i](maps[a], maps[b]))
        return tuple([maps[i] for i in STAGE_OUTPUT_POSITIONS])
