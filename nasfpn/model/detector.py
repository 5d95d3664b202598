"""The whole detector: backbone + neck + head, plus its training and inference wrappers.

Parameter names (`network.backbone...`, `network.neck...`, `network.head...`) equal the published
checkpoint's (tests/data/param_manifest.tsv; docs/architecture.md#the-checkpoints-names) because
both wrappers hold the detector as `self.network`.
"""

import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Tensor
from mindspore import dtype as mstype

from nasfpn.config.sections import AnchorConfig, ModelConfig
from nasfpn.ops.loss import RetinaNetLoss
from nasfpn.model.layers import synchronise_batch_norms
from nasfpn.model.nas_fpn import NasFpn
from nasfpn.model.resnet import ResNet
from nasfpn.model.retina_head import RetinaHead


class RetinaNetNasFpn(nn.Cell):
    """images (N, 3, H, W) -> (loc offsets (N, A, 4), class logits (N, A, num_classes))."""

    def __init__(
        self,
        num_classes=81,
        backbone_depth=50,
        fpn_channels=256,
        fpn_stages=7,
        head_convs=4,
        anchors_per_cell=9,
        cls_prior_probability=0.0,
        bn_momentum=0.997,
    ):
        super().__init__()
        self.backbone = ResNet(backbone_depth, bn_momentum)
        self.neck = NasFpn(self.backbone.out_channels, fpn_channels, fpn_stages, bn_momentum)
        self.head = RetinaHead(
            fpn_channels,
            num_classes,
            anchors_per_cell,
            num_levels=5,
            num_convs=head_convs,
            cls_prior_probability=cls_prior_probability,
        )

    def construct(self, images):
        c3, c4, c5 = self.backbone(images)
        features = self.neck(c3, c4, c5)
        return self.head(features)


def build_detector(model: ModelConfig, anchors: AnchorConfig, sync_bn: bool = False) -> RetinaNetNasFpn:
    """The detector of the model section, with a head for the anchors section's anchors per cell;
    `sync_bn`: its BatchNorms synchronised over all devices (training only; needs communication
    initialised)."""
    detector = RetinaNetNasFpn(
        num_classes=model.num_classes,
        backbone_depth=model.backbone_depth,
        fpn_channels=model.fpn_channels,
        fpn_stages=model.fpn_stages,
        head_convs=model.head_convs,
        anchors_per_cell=anchors.per_cell,
        cls_prior_probability=model.cls_prior_probability,
        bn_momentum=model.bn_momentum,
    )
    if sync_bn:
        synchronise_batch_norms(detector)
    return detector


class BoxDecoder(nn.Cell):
    """Offsets -> boxes (y1, x1, y2, x2) in [0, 1]: the inverse of nasfpn.ops.boxes.encode_targets."""

    def __init__(self, anchors_cycxhw, prior_scaling):
        super().__init__()
        self.anchor_centre = Tensor(anchors_cycxhw[None, :, :2], mstype.float32)
        self.anchor_size = Tensor(anchors_cycxhw[None, :, 2:], mstype.float32)
        self.centre_scale = float(prior_scaling[0])
        self.size_scale = float(prior_scaling[1])

    def construct(self, loc):
        centre = loc[:, :, :2] * self.centre_scale * self.anchor_size + self.anchor_centre
        size = ops.exp(loc[:, :, 2:] * self.size_scale) * self.anchor_size
        boxes = ops.concat((centre - size / 2.0, centre + size / 2.0), axis=-1)
        return ops.clamp(boxes, 0.0, 1.0)


class RetinaNetInfer(nn.Cell):
    """Exported/evaluated graph: images -> (boxes (N, A, 4) in [0, 1], scores (N, A, C) sigmoid)."""

    def __init__(self, network, anchors_cycxhw, prior_scaling):
        super().__init__()
        self.network = network
        self.decoder = BoxDecoder(anchors_cycxhw, prior_scaling)

    def construct(self, images):
        loc, logits = self.network(images)
        return self.decoder(loc), ops.sigmoid(logits)


class RetinaNetWithLoss(nn.Cell):
    """Training graph: (images, gt_loc, gt_label, num_match) -> scalar loss (docs/conventions.md#loss)."""

    def __init__(self, network, num_classes, gamma=2.0, alpha=0.75, positives_group_size=1):
        super().__init__()
        self.network = network
        self.loss = RetinaNetLoss(num_classes, gamma, alpha, positives_group_size)

    def construct(self, images, gt_loc, gt_label, num_match):
        loc, logits = self.network(images)
        return self.loss(loc, logits, gt_loc, gt_label, num_match)
