"""MobileNetV2 (Sandler et al. 2018) as the backbone of NAS-FPNLite: images -> (C3, C4, C5).

The cells and parameter names are mindcv's (`features.<i>` a flat list: the stem conv, BN and ReLU6,
then the 17 inverted residual blocks, each `layers.<j>`), so a mindcv ImageNet checkpoint loads by
name; torchvision's layout is renamed onto it (nasfpn/model/mobilenet_weights.py). C3, C4 and C5 are
the outputs of the last block at strides 8, 16 and 32 (32, 96 and 320 channels at width 1.0); the
classifier's 1x1 conv to 1280 channels is not built (a detector does not use it).

Convs are padded symmetrically (pad 1 for 3x3), as both mindcv and torchvision train them; BN eps is
1e-5, theirs.
"""

import mindspore.nn as nn

from nasfpn.model.layers import _weight_init

BN_EPS = 1e-5
# (expansion t, output channels c, blocks n, first stride s) of the paper's table 2
BLOCK_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
TAP_STRIDES = (8, 16, 32)  # C3, C4, C5


def make_divisible(value, divisor=8):
    """Channels rounded to a multiple of `divisor`, never more than 10 % below `value` (the rounding
    every MobileNetV2 implementation uses, so a width's checkpoints agree on shapes)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv(in_channels, out_channels, kernel, stride=1, group=1):
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel,
        stride,
        pad_mode="pad",
        padding=kernel // 2,
        group=group,
        has_bias=False,
        weight_init=_weight_init(),
    )


def _bn(channels, momentum):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=momentum)


class InvertedResidual(nn.Cell):
    """[1x1 expand -> BN -> ReLU6] -> 3x3 depthwise (stride) -> BN -> ReLU6 -> 1x1 linear -> BN, plus
    the input when the shape is kept; `layers.<j>` as mindcv's."""

    def __init__(self, in_channels, out_channels, stride, expansion, bn_momentum):
        super().__init__()
        hidden = round(in_channels * expansion)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expansion != 1:
            layers += [_conv(in_channels, hidden, 1), _bn(hidden, bn_momentum), nn.ReLU6()]
        layers += [
            _conv(hidden, hidden, 3, stride, group=hidden),
            _bn(hidden, bn_momentum),
            nn.ReLU6(),
            _conv(hidden, out_channels, 1),
            _bn(out_channels, bn_momentum),
        ]
        self.layers = nn.SequentialCell(layers)

    def construct(self, x):
        if self.use_residual:
            return x + self.layers(x)
        return self.layers(x)


def block_plan(width):
    """Per block: (input channels, output channels, stride, expansion, stride of its output)."""
    plan = []
    channels = make_divisible(STEM_CHANNELS * width)
    reduction = 2
    for expansion, c, n, s in BLOCK_SETTINGS:
        out = make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            reduction *= stride
            plan.append((channels, out, stride, expansion, reduction))
            channels = out
    return plan


class MobileNetV2(nn.Cell):
    """images (N, 3, H, W) -> (C3, C4, C5); `out_channels` their widths. `width`: the width
    multiplier (mindcv's alpha, torchvision's width_mult)."""

    def __init__(self, width=1.0, bn_momentum=0.997):
        super().__init__()
        plan = block_plan(width)
        stem = make_divisible(STEM_CHANNELS * width)
        features = [_conv(3, stem, 3, 2), _bn(stem, bn_momentum), nn.ReLU6()]
        features += [InvertedResidual(i, o, s, t, bn_momentum) for i, o, s, t, _ in plan]
        self.features = nn.SequentialCell(features)
        # the index in `features` of the last block at each tap's stride
        last = {reduction: 3 + k for k, (*_, reduction) in enumerate(plan)}
        self.taps = tuple(last[stride] for stride in TAP_STRIDES)
        self.out_channels = tuple(plan[index - 3][1] for index in self.taps)

    @staticmethod
    def blocks_in_groups(groups):
        """How many blocks the first `groups` rows of BLOCK_SETTINGS hold."""
        return sum(n for _, _, n, _ in BLOCK_SETTINGS[:groups])

    def construct(self, x):
        taps = ()
        for i in range(self.taps[-1] + 1):
            x = self.features[i](x)
            if i in self.taps:
                taps += (x,)
        return taps
