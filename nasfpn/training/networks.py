"""Building what one training process trains: the detector, its loss wrapper (under amp), the
moving average of its weights, the optimizer and the train step, in the order they depend on
each other. Restoring a starting point is nasfpn/training/starting_point.py, the step loop
nasfpn/training/loop.py; nasfpn/training/trainer.py puts the three together."""

import logging
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
import mindspore.nn as nn

from nasfpn.model import RetinaNetWithLoss, build_detector
from nasfpn.model.backbone_weights import freeze_backbone_stages
from nasfpn.model.recompute import apply_recompute
from nasfpn.training.ema import WeightAverage
from nasfpn.training.train_step import TrainStep, build_optimizer, positives_group_size


@dataclass
class TrainingNetworks:
    """The cells of one training process; `net` is the loss wrapper (amp applied), `step` the
    train step around it and `optimizer`; `frozen` the backbone parameters without gradient."""

    detector: nn.Cell
    frozen: list
    net: nn.Cell
    average: Optional[WeightAverage]
    optimizer: nn.Optimizer
    step: TrainStep


def mixed_precision(net, amp_level):
    """`net` under amp O2 / O3: the returned cell shares its parameters and casts the loss back to
    float32. Under O2 synchronised BN stays float32 like plain BN (MindSpore's black list names
    BatchNorm1d/2d/3d and LayerNorm, not SyncBatchNorm)."""
    if amp_level == "O2":
        return ms.amp.custom_mixed_precision(net, black_list=ms.amp.get_black_list() + [nn.SyncBatchNorm])
    return ms.amp.auto_mixed_precision(net, amp_level)


def with_amp(net, amp_level: str, device_target: str, log: logging.Logger):
    """`net` under amp_level; on a CPU, where it is ignored (float32 training), with a warning."""
    if amp_level == "O0":
        return net
    if device_target == "CPU":
        log.warning("amp_level=%s ignored on CPU (float32 training)", amp_level)
        return net
    return mixed_precision(net, amp_level)


def freeze_backbone(detector, stages: int, log: logging.Logger) -> list:
    """Freeze the stem and layer1..layer`stages` (before the optimizer is built); returns them."""
    frozen = freeze_backbone_stages(detector.backbone, stages)
    if frozen:
        log.info(
            "backbone: stem and layer1..layer%d frozen (%d parameters without gradient, their "
            "BN on its moving statistics)",
            stages,
            len(frozen),
        )
    return frozen


def build_training_networks(
    model, anchors, training, device_target: str, lr, group_size: int, log: logging.Logger
) -> TrainingNetworks:
    """The detector of the model and anchors sections and everything that trains it as the
    training section says, with the lr array `lr` on `device_target`; `group_size` devices
    (synchronised BN and the positives count span them when asked)."""
    detector = build_detector(model, anchors, sync_bn=training.sync_bn and group_size > 1)
    apply_recompute(detector, training.recompute)
    frozen = freeze_backbone(detector, training.backbone_frozen_stages, log)  # before the optimizer
    net = RetinaNetWithLoss(
        detector,
        model.num_classes,
        training.gamma,
        training.alpha,
        positives_group_size(training.normalize_positives_over_devices, group_size),
        deep_supervision=model.deep_supervision,
    )
    # --ema: the moving average of the detector's weights (nasfpn/training/ema.py); built before
    # amp, whose O2 wraps BN cells and so renames their paths (not their parameters)
    average = WeightAverage(detector, training.ema_decay, training.ema_warmup_steps) if training.ema else None
    net = with_amp(net, training.amp_level, device_target, log)
    optimizer = build_optimizer(net, lr, training.momentum, training.weight_decay)
    step = TrainStep(
        net,
        optimizer,
        training.loss_scale,
        training.loss_scale_type == "dynamic",
        training.grad_clip_norm,
        training.accumulate_steps,
    )
    return TrainingNetworks(detector, frozen, net, average, optimizer, step)
