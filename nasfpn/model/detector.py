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
from nasfpn.config.pyramid import RELEASE_STAGE, resolve_pyramid_spec, with_combine
from nasfpn.model.mobilenet_v2 import MobileNetV2
from nasfpn.model.resnet import ResNet
from nasfpn.model.retina_head import RetinaHead


class RetinaNetNasFpn(nn.Cell):
    """images (N, 3, H, W) -> (loc offsets (N, A, 4), class logits (N, A, num_classes)).

    The defaults are the release network. Options of the paper's family (docs/family.md):
    `fpn_spec` (the stage's merge cells, nasfpn/config/pyramid.py), `activation`,
    `backbone` (resnet of `backbone_depth`, or mobilenet_v2 of `backbone_width`: NAS-FPNLite's),
    `separable_conv` (merge cells' output convs and head convs depthwise-separable), `dropblock`
    ((keep_prob, block_size) after each output conv's BN, training only), `exit_stage` (run the
    first k pyramid stages only)."""

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
        fpn_spec=RELEASE_STAGE,
        activation="relu",
        separable_conv=False,
        dropblock=None,
        exit_stage=0,
        backbone="resnet",
        backbone_width=1.0,
    ):
        super().__init__()
        if backbone == "mobilenet_v2":
            self.backbone = MobileNetV2(backbone_width, bn_momentum)
        else:
            self.backbone = ResNet(backbone_depth, bn_momentum)
        self.neck = NasFpn(
            self.backbone.out_channels,
            fpn_channels,
            fpn_stages,
            bn_momentum,
            spec=fpn_spec,
            exit_stage=exit_stage,
            activation=activation,
            separable=separable_conv,
            dropblock=dropblock,
        )
        self.head = RetinaHead(
            fpn_channels,
            num_classes,
            anchors_per_cell,
            num_levels=5,
            num_convs=head_convs,
            cls_prior_probability=cls_prior_probability,
            activation=activation,
            separable=separable_conv,
        )

    def construct(self, images):
        c3, c4, c5 = self.backbone(images)
        features = self.neck(c3, c4, c5)
        return self.head(features)

    def stage_outputs(self, images):
        """(loc, logits) of the shared head after every pyramid stage, first stage first (deep
        supervision: the head is the same cell, so every exit uses the same weights)."""
        c3, c4, c5 = self.backbone(images)
        outputs = ()
        for features in self.neck.stage_features(c3, c4, c5):
            outputs += (self.head(features),)
        return outputs


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
        fpn_spec=pyramid_spec_of(model.fpn_spec, model.fpn_combine),
        activation=model.activation,
        separable_conv=model.separable_conv,
        dropblock=model.dropblock,
        exit_stage=model.exit_stage,
        backbone=model.backbone,
        backbone_width=model.backbone_width,
    )
    if sync_bn:
        synchronise_batch_norms(detector)
    return detector


def pyramid_spec_of(fpn_spec, fpn_combine):
    """The stage spec the options describe: the --fpn_spec value (null: the release's), every cell
    summing when fpn_combine is `sum`."""
    spec = resolve_pyramid_spec(fpn_spec)
    return with_combine(spec, "sum") if fpn_combine == "sum" else spec


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
    """Training graph: (images, gt_loc, gt_label, num_match) -> scalar loss (docs/conventions.md#loss).

    deep_supervision: the loss is the mean over the pyramid stages of the loss of the head applied
    after each stage (anytime detection), instead of the loss after the last stage."""

    def __init__(
        self, network, num_classes, gamma=2.0, alpha=0.75, positives_group_size=1, deep_supervision=False
    ):
        super().__init__()
        self.network = network
        self.loss = RetinaNetLoss(num_classes, gamma, alpha, positives_group_size)
        self.deep_supervision = deep_supervision

    def construct(self, images, gt_loc, gt_label, num_match):
        if not self.deep_supervision:
            loc, logits = self.network(images)
            return self.loss(loc, logits, gt_loc, gt_label, num_match)
        outputs = self.network.stage_outputs(images)
        total = 0.0
        for loc, logits in outputs:
            total = total + self.loss(loc, logits, gt_loc, gt_label, num_match)
        return total / len(outputs)
