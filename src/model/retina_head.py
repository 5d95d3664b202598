"""RetinaNet head with separate (unshared) regression and classification subnets per level."""
import math

import mindspore.nn as nn
import mindspore.ops as ops
import numpy as np
from mindspore import Tensor

from .layers import conv2d


def prior_bias(probability, anchors_per_cell, num_classes):
    """RetinaNet's prior-probability bias for the final classification conv (channel k*C + c).

    The focal loss here also trains the background column (one-hot on column 0 for background
    anchors), so column 0 starts at 1 - p and the object classes at p."""
    logit = math.log((1 - probability) / probability)
    bias = np.full((anchors_per_cell, num_classes), -logit, np.float32)
    bias[:, 0] = logit
    return Tensor(bias.reshape(-1))


class ConvSubnet(nn.Cell):
    """`feats`: (3x3 conv -> ReLU) x num_convs, then a 3x3 conv to `out_channels`; no biases."""

    def __init__(self, channels, out_channels, num_convs, bias_init=None):
        super().__init__()
        layers = []
        for _ in range(num_convs):
            layers += [conv2d(channels, channels, 3), nn.ReLU()]
        layers.append(conv2d(channels, out_channels, 3, bias_init=bias_init))
        self.feats = nn.SequentialCell(layers)

    def construct(self, x):
        return self.feats(x)


class RetinaHead(nn.Cell):
    """Per level l: loc (N, H*W*k, 4), cls (N, H*W*k, C); levels concatenated P3..P7.

    Order within a level is row, column, then the k anchors of the cell (matches src/boxes.Anchors).
    """

    def __init__(self, channels, num_classes, anchors_per_cell, num_levels, num_convs,
                 cls_prior_probability):
        """cls_prior_probability > 0 adds a bias to the final classification convs, initialised so
        every score starts at that probability (not in the release, which has no biases)."""
        super().__init__()
        self.num_classes = num_classes
        self.multi_loc_layers = nn.CellList([ConvSubnet(channels, anchors_per_cell * 4, num_convs)
                                             for _ in range(num_levels)])
        bias = (prior_bias(cls_prior_probability, anchors_per_cell, num_classes)
                if cls_prior_probability > 0 else None)
        self.multi_cls_layers = nn.CellList([ConvSubnet(channels, anchors_per_cell * num_classes,
                                                        num_convs, bias)
                                             for _ in range(num_levels)])

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
