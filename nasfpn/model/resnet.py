"""ResNet v1 backbone (stride on the 3x3 conv) returning C3, C4, C5.

Depth 50 is the release's (bottleneck blocks); 18 and 34 (basic blocks) are lighter members of the
family for CPU demos. BN: eps 1e-3, momentum 0.997; the last BN of each block starts at gamma = 0.
"""

import mindspore.nn as nn

from nasfpn.model.layers import batch_norm, conv2d

BN_EPS = 1e-3

# depth -> (block kind, blocks per stage)
RESNET_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # width of the 3x3 convs in each stage
STAGE_STRIDES = (1, 2, 2, 2)


def _projection(in_channels, out_channels, stride, bn_momentum):
    """`down_sample_layer`: 1x1 conv with the block's stride + BN, when the shortcut changes shape."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.SequentialCell(
        [conv2d(in_channels, out_channels, 1, stride=stride), batch_norm(out_channels, BN_EPS, bn_momentum)]
    )


class Bottleneck(nn.Cell):
    expansion = 4

    def __init__(self, in_channels, width, stride, bn_momentum):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv2d(in_channels, width, 1)
        self.bn1 = batch_norm(width, BN_EPS, bn_momentum)
        self.conv2 = conv2d(width, width, 3, stride=stride)
        self.bn2 = batch_norm(width, BN_EPS, bn_momentum)
        self.conv3 = conv2d(width, out_channels, 1)
        self.bn3 = batch_norm(out_channels, BN_EPS, bn_momentum, gamma_init="zeros")
        self.relu = nn.ReLU()
        self.down_sample_layer = _projection(in_channels, out_channels, stride, bn_momentum)
        self.has_projection = self.down_sample_layer is not None

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.down_sample_layer(x) if self.has_projection else x
        return self.relu(out + shortcut)


class BasicBlock(nn.Cell):
    expansion = 1

    def __init__(self, in_channels, width, stride, bn_momentum):
        super().__init__()
        self.conv1 = conv2d(in_channels, width, 3, stride=stride)
        self.bn1 = batch_norm(width, BN_EPS, bn_momentum)
        self.conv2 = conv2d(width, width, 3)
        self.bn2 = batch_norm(width, BN_EPS, bn_momentum, gamma_init="zeros")
        self.relu = nn.ReLU()
        self.down_sample_layer = _projection(in_channels, width, stride, bn_momentum)
        self.has_projection = self.down_sample_layer is not None

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = self.down_sample_layer(x) if self.has_projection else x
        return self.relu(out + shortcut)


class ResNet(nn.Cell):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and layer1..layer4; returns (C3, C4, C5)."""

    def __init__(self, depth, bn_momentum):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"backbone_depth must be one of {sorted(RESNET_SPECS)}, got {depth}")
        kind, blocks = RESNET_SPECS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.conv1 = conv2d(3, 64, 7, stride=2)
        self.bn1 = batch_norm(64, BN_EPS, bn_momentum)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        in_channels = 64
        stages = []
        for width, stride, count in zip(STAGE_WIDTHS, STAGE_STRIDES, blocks):
            cells = []
            for i in range(count):
                cells.append(block(in_channels, width, stride if i == 0 else 1, bn_momentum))
                in_channels = width * block.expansion
            stages.append(nn.SequentialCell(cells))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = tuple(w * block.expansion for w in STAGE_WIDTHS[1:])  # C3, C4, C5

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5
