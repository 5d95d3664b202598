"""RetinaNet head with separate (unshared) regression and classification subnets per level."""

import math

import mindspore.nn as nn
import mindspore.ops as ops
import numpy as np
from mindspore import Tensor

from nasfpn.model.layers import activation_cell, conv2d, separable_conv2d


def prior_bias(probability, anchors_per_cell, num_classes):
    """RetinaNet's prior-probability bias for the final classification conv (channel k*C + c).

    The focal loss here also trains the background column (one-hot on column 0 for background
    anchors), so column 0 starts at 1 - p and the object classes at p."""
    logit = math.log((1 - probability) / probability)
    bias = np.full((anchors_per_cell, num_classes), -logit, np.float32)
    bias[:, 0] = logit
    return Tensor(bias.reshape(-1))


def class_row_map(source_names, target_names):
    """For each class index of `target_names` (background first) the index of the class of the
    same name in `source_names`, or -1 where the source has no such class. Index 0 (background)
    maps to 0 whatever the lists call it; names are compared exactly (case, spaces and
    punctuation count), as class names are everywhere else (nasfpn/data/coco_format.py)."""
    index_of = {}
    for index, name in enumerate(list(source_names)[1:], start=1):
        index_of.setdefault(name, index)
    return np.array([0] + [index_of.get(name, -1) for name in list(target_names)[1:]], np.int64)


def remap_class_channels(source, fresh, row_map, anchors_per_cell):
    """The final classification conv's weight or bias for other classes. Its first axis is
    anchor-major, channel a*C + c for anchor a and class c (the order prior_bias and
    RetinaHead._flatten use): channel a*C_target + c takes the source's a*C_source + row_map[c],
    for all anchors a, and keeps `fresh`'s value where row_map[c] is -1. Returns a new array."""
    source, fresh = np.asarray(source), np.asarray(fresh)
    row_map = np.asarray(row_map, np.int64)
    num_target = len(row_map)
    if source.shape[0] % anchors_per_cell or fresh.shape[0] != anchors_per_cell * num_target:
        raise ValueError(
            f"channels {source.shape[0]} -> {fresh.shape[0]} do not fit "
            f"{anchors_per_cell} anchors x {num_target} classes"
        )
    num_source = source.shape[0] // anchors_per_cell
    if source.shape[1:] != fresh.shape[1:] or row_map.max(initial=-1) >= num_source:
        raise ValueError(f"source {source.shape} cannot give the rows {row_map.tolist()} of {fresh.shape}")
    by_anchor = source.reshape(anchors_per_cell, num_source, *source.shape[1:])
    out = fresh.reshape(anchors_per_cell, num_target, *fresh.shape[1:]).copy()
    kept = row_map >= 0
    out[:, kept] = by_anchor[:, row_map[kept]]
    return out.reshape(fresh.shape)


class ConvSubnet(nn.Cell):
    """`feats`: (3x3 conv -> ReLU) x num_convs, then a 3x3 conv to `out_channels`; no biases.
    Options (off in the release): `separable` 3x3 convs (depthwise + pointwise, NAS-FPNLite) and
    another `activation` (relu6, swish)."""

    def __init__(self, channels, out_channels, num_convs, bias_init=None, activation="relu", separable=False):
        super().__init__()

        def conv(c_out, bias=None):
            if separable:
                return separable_conv2d(channels, c_out, bias_init=bias)
            return conv2d(channels, c_out, 3, bias_init=bias)

        layers = []
        for _ in range(num_convs):
            layers += [conv(channels), activation_cell(activation)]
        layers.append(conv(out_channels, bias_init))
        self.feats = nn.SequentialCell(layers)

    def construct(self, x):
        return self.feats(x)


class RetinaHead(nn.Cell):
    """Per level l: loc (N, H*W*k, 4), cls (N, H*W*k, C); levels concatenated P3..P7.

    Order within a level is row, column, then the k anchors of the cell (matches nasfpn/ops/boxes.Anchors).
    """

    def __init__(
        self,
        channels,
        num_classes,
        anchors_per_cell,
        num_levels,
        num_convs,
        cls_prior_probability,
        activation="relu",
        separable=False,
    ):
        """cls_prior_probability > 0 adds a bias to the final classification convs, initialised so
        every score starts at that probability (not in the release, which has no biases)."""
        subnet_options = {"activation": activation, "separable": separable}
        super().__init__()
        self.num_classes = num_classes
        self.multi_loc_layers = nn.CellList(
            [
                ConvSubnet(channels, anchors_per_cell * 4, num_convs, **subnet_options)
                for _ in range(num_levels)
            ]
        )
        bias = (
            prior_bias(cls_prior_probability, anchors_per_cell, num_classes)
            if cls_prior_probability > 0
            else None
        )
        self.multi_cls_layers = nn.CellList(
            [
                ConvSubnet(channels, anchors_per_cell * num_classes, num_convs, bias, **subnet_options)
                for _ in range(num_levels)
            ]
        )

    @staticmethod
    def _flatten(x, last):
        n = x.shape[0]
        return ops.transpose(x, (0, 2, 3, 1)).reshape(n, -1, last)

    def construct(self, features):
        locs = ()
        scores = ()
        for i in range(len(features)):
            locs += (self._flatten(self.multi_loc_layers[i](features[i]), 4),)
            scores += (self._flatten(self.multi_cls_layers[i](features[i]), self.num_classes),)
        return ops.concat(locs, axis=1), ops.concat(scores, axis=1)
