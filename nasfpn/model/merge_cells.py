"""NAS-FPN merge cells: resize two pyramid levels to a target level, then SUM or global-pool them.

Levels are pyramid indices (3 = stride 8 ... 7 = stride 128), so every resize is a static power of
two: coarser inputs are upsampled by nearest neighbour, finer ones max-pooled with
kernel = stride = the size ratio (docs/architecture.md#neck-nas-fpn-networkneck).
"""

import mindspore.nn as nn
import mindspore.ops as ops

from nasfpn.model.layers import batch_norm, conv2d

NECK_BN_EPS = 1e-5


class NearestUpsample(nn.Cell):
    """Integer-factor nearest-neighbour upsampling as reshape + broadcast (exact, ONNX-friendly)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def construct(self, x):
        n, c, h, w = x.shape
        f = self.factor
        x = x.reshape(n, c, h, 1, w, 1)
        x = ops.broadcast_to(x, (n, c, h, f, w, f))
        return x.reshape(n, c, h * f, w * f)


def resize_between_levels(from_level, to_level):
    """The cell that brings a map from one pyramid level to another (None: already there)."""
    if from_level == to_level:
        return None
    factor = 2 ** abs(from_level - to_level)
    if from_level > to_level:
        return NearestUpsample(factor)
    return nn.MaxPool2d(kernel_size=factor, stride=factor, pad_mode="same")


class ReluConvBn(nn.Cell):
    """The merge cell's output conv: ReLU -> 3x3 conv (pad 1, no bias) -> BN, as `features.{0,1,2}`."""

    def __init__(self, channels, bn_momentum):
        super().__init__()
        self.features = nn.SequentialCell(
            [
                nn.ReLU(),
                conv2d(channels, channels, 3, padding=1),
                batch_norm(channels, NECK_BN_EPS, bn_momentum),
            ]
        )

    def construct(self, x):
        return self.features(x)


class MergeCell(nn.Cell):
    """Base: resize inputs a (level `level_a`) and b (`level_b`) to `out_level`, merge, maybe conv."""

    def __init__(self, level_a, level_b, out_level, channels, with_out_conv, bn_momentum):
        super().__init__()
        self.resize_a = resize_between_levels(level_a, out_level)
        self.resize_b = resize_between_levels(level_b, out_level)
        self.has_resize_a = self.resize_a is not None
        self.has_resize_b = self.resize_b is not None
        self.out_conv = ReluConvBn(channels, bn_momentum) if with_out_conv else None
        self.with_out_conv = with_out_conv

    def merge(self, a, b):
        raise NotImplementedError

    def construct(self, a, b):
        if self.has_resize_a:
            a = self.resize_a(a)
        if self.has_resize_b:
            b = self.resize_b(b)
        x = self.merge(a, b)
        if self.with_out_conv:
            x = self.out_conv(x)
        return x


class SumCell(MergeCell):
    """SUM(a, b) = a + b."""

    def merge(self, a, b):
        return a + b


class GlobalPoolingCell(MergeCell):
    """GP(a, b) = b + sigmoid(mean_hw(b)) * a: the attention comes from the second input."""

    def merge(self, a, b):
        attention = ops.sigmoid(b.mean(axis=(2, 3), keep_dims=True))
        return b + attention * a
