"""NAS-FPN merge cells: resize two pyramid levels to a target level, then SUM or global-pool them.

Levels are pyramid indices (3 = stride 8 ... 7 = stride 128), so every resize is a static power of
two: coarser inputs are upsampled by nearest neighbour, finer ones max-pooled with
kernel = stride = the size ratio (docs/architecture.md#neck-nas-fpn-networkneck).

Options of the authors' reference, all off for the release network: the output conv as a
depthwise-separable conv (NAS-FPNLite), ReLU6 or swish instead of ReLU, DropBlock after the output
conv's BN (training only).
"""

import mindspore.nn as nn
import mindspore.ops as ops

from nasfpn.model.layers import activation_cell, batch_norm, conv2d, separable_conv2d

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


class DropBlock(nn.Cell):
    """DropBlock (Ghiasi, Lin, Le 2018): in training, zero `block_size` x `block_size` squares around
    random centres so that about 1 - keep_prob of the map is dropped, and rescale what is kept by
    (all / kept) so the expected sum is unchanged; the identity in inference. Centres are drawn at
    rate gamma = (1 - keep_prob) / block_size^2 * H W / ((H - block_size + 1)(W - block_size + 1))."""

    def __init__(self, keep_prob, block_size):
        super().__init__()
        if block_size % 2 != 1:
            raise ValueError(f"DropBlock: block_size must be odd (centred blocks), got {block_size}")
        self.keep_prob = float(keep_prob)
        self.block_size = int(block_size)
        self.spread = nn.MaxPool2d(kernel_size=block_size, stride=1, pad_mode="same")

    def centre_rate(self, h, w):
        valid = max(h - self.block_size + 1, 1) * max(w - self.block_size + 1, 1)
        return (1.0 - self.keep_prob) / (self.block_size**2) * (h * w) / valid

    def construct(self, x):
        if not self.training or self.keep_prob >= 1.0:
            return x
        gamma = self.centre_rate(x.shape[2], x.shape[3])
        centres = (ops.rand_like(x) < gamma).astype(x.dtype)
        keep = 1.0 - self.spread(centres)
        return x * keep * (keep.size / ops.maximum(keep.sum(), 1.0))


class ReluConvBn(nn.Cell):
    """The merge cell's output conv: ReLU -> 3x3 conv (pad 1, no bias) -> BN, as `features.{0,1,2}`
    (a separable conv: `features.1.depthwise` + `features.1.pointwise`); DropBlock after the BN when
    `dropblock` is (keep_prob, block_size)."""

    def __init__(self, channels, bn_momentum, activation="relu", separable=False, dropblock=None):
        super().__init__()
        conv = separable_conv2d(channels, channels) if separable else conv2d(channels, channels, 3, padding=1)
        layers = [activation_cell(activation), conv, batch_norm(channels, NECK_BN_EPS, bn_momentum)]
        if dropblock is not None:
            layers.append(DropBlock(*dropblock))
        self.features = nn.SequentialCell(layers)

    def construct(self, x):
        return self.features(x)


class MergeCell(nn.Cell):
    """Base: resize inputs a (level `level_a`) and b (`level_b`) to `out_level`, merge, maybe conv.
    `conv_options`: ReluConvBn's activation, separable and dropblock."""

    def __init__(self, level_a, level_b, out_level, channels, with_out_conv, bn_momentum, **conv_options):
        super().__init__()
        self.resize_a = resize_between_levels(level_a, out_level)
        self.resize_b = resize_between_levels(level_b, out_level)
        self.has_resize_a = self.resize_a is not None
        self.has_resize_b = self.resize_b is not None
        self.out_conv = ReluConvBn(channels, bn_momentum, **conv_options) if with_out_conv else None
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


CELL_TYPES = {"sum": SumCell, "attention": GlobalPoolingCell}
