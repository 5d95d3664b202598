"""The NAS-FPN neck: laterals on C3..C5, extra levels P6/P7, and stacked merge-cell stages.

Each stage is built from a spec (nasfpn/config/pyramid.py; the release's by default) in the
checkpoint's order fpn_stages.<s>.<index>, and `NasFpn.run_stage` walks the spec's wiring: the
wiring is stated only in the spec. `exit_stage` runs the first stages only (anytime detection);
`stage_features` gives every stage's outputs (deep supervision).
"""

import mindspore.nn as nn

from nasfpn.model.layers import ConvBn
from nasfpn.model.merge_cells import CELL_TYPES, NECK_BN_EPS
from nasfpn.config.pyramid import RELEASE_STAGE, node_levels, stage_wiring


class NasFpnStage(nn.CellList):
    """The merge cells of one stage in spec order; `NasFpn.run_stage` wires them.

    (A CellList cannot have its own construct in graph mode, and a wrapper Cell would add a level to
    the parameter names, so the wiring lives in the neck.)"""

    def __init__(self, channels, bn_momentum, spec=RELEASE_STAGE, **conv_options):
        levels = node_levels(spec)
        cells = [
            CELL_TYPES[cell.combine](
                levels[cell.inputs[0]],
                levels[cell.inputs[1]],
                cell.level,
                channels,
                cell.output_conv,
                bn_momentum,
                **conv_options,
            )
            for cell in spec
        ]
        super().__init__(cells)


class NasFpn(nn.Cell):
    """(C3, C4, C5) -> (P3, P4, P5, P6, P7), each with `channels` channels.

    conv_options: the merge cells' output conv (activation, separable, dropblock); exit_stage: run
    stages 1..exit_stage only (0: all)."""

    def __init__(
        self, in_channels, channels, num_stages, bn_momentum, spec=RELEASE_STAGE, exit_stage=0, **conv_options
    ):
        super().__init__()
        if not 0 <= exit_stage <= num_stages:
            raise ValueError(f"exit_stage {exit_stage} outside 0..{num_stages}")
        wiring = stage_wiring(spec)
        self.cell_inputs = wiring.inputs
        self.output_positions = wiring.outputs
        self.run_stages = exit_stage or num_stages
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
        self.fpn_stages = nn.CellList(
            [NasFpnStage(channels, bn_momentum, spec, **conv_options) for _ in range(num_stages)]
        )

    def stage_inputs(self, c3, c4, c5):
        p3 = self.lateral_convs[0](c3)
        p4 = self.lateral_convs[1](c4)
        p5 = self.lateral_convs[2](c5)
        p6 = self.extra_downsamples[0](p5)
        p7 = self.extra_downsamples[1](p6)
        return p3, p4, p5, p6, p7

    def construct(self, c3, c4, c5):
        p3, p4, p5, p6, p7 = self.stage_inputs(c3, c4, c5)
        for i in range(self.run_stages):
            p3, p4, p5, p6, p7 = self.run_stage(self.fpn_stages[i], p3, p4, p5, p6, p7)
        return p3, p4, p5, p6, p7

    def stage_features(self, c3, c4, c5):
        """Every stage's (P3..P7), first stage first: the head sees each under deep supervision."""
        p3, p4, p5, p6, p7 = self.stage_inputs(c3, c4, c5)
        features = ()
        for i in range(self.run_stages):
            p3, p4, p5, p6, p7 = self.run_stage(self.fpn_stages[i], p3, p4, p5, p6, p7)
            features += ((p3, p4, p5, p6, p7),)
        return features

    def run_stage(self, cells, p3, p4, p5, p6, p7):
        """One stage: cell i takes the nodes `cell_inputs[i]` names; returns the outputs P3..P7."""
        maps = [p3, p4, p5, p6, p7]
        for i, (a, b) in enumerate(self.cell_inputs):
            maps.append(cells[i](maps[a], maps[b]))
        return tuple([maps[i] for i in self.output_positions])
