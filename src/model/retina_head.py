"""RetinaNet head with separate (unshared) regression and classification subnets per level."""
import mindspore.nn as nn
import mindspore.ops as ops

from .layers import conv2d


class ConvSubnet(nn.Cell):
    """`feats`: (3x3 conv -> ReLU) x num_convs, then a 3x3 conv to `out_channels`; no biases."""

    def __init__(self, channels, out_channels, num_convs=4):
        super().__init__()
        layers = []
        for _ in range(num_convs):
            layers += [conv2d(channels, channels, 3), nn.ReLU()]
        layers.append(conv2d(channels, out_channels, 3))
        self.feats = nn.SequentialCell(layers)

    def construct(self, x):
        return self.feats(x)


class RetinaHead(nn.Cell):
    """Per level l: loc (N, H*W*k, 4), cls (N, H*W*k, C); levels concatenated P3..P7.

    Order within a level is row, column, then the k anchors of the cell (matches src/boxes.Anchors).
    """

    def __init__(self, channels=256, num_classes=81, anchors_per_cell=9, num_levels=5, num_convs=4):
        super().__init__()
        self.num_classes = num_classes
        self.multi_loc_layers = nn.CellList([ConvSubnet(channels, anchors_per_cell * 4, num_convs)
                                             for _ in range(num_levels)])
        self.multi_cls_layers = nn.CellList([ConvSubnet(channels, anchors_per_cell * num_classes,
                                                        num_convs) for _ in range(num_levels)])

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
