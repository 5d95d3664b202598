"""Activation recompute (`recompute` option): MindSpore's Cell.recompute on chosen cells, so their
inner activations are not kept for the backward pass but computed again there - lower peak memory
for more compute, with the same numbers. Only a flag on existing cells: parameter names and the
forward graph are unchanged.

Granularity is one residual block / merge cell / head subnet: the cell's output is kept, what lies
inside it is recomputed, so the peak holds the block outputs plus one block's inner activations.

BatchNorm in training mode updates its running statistics as a side effect of the forward op; run
again for the backward pass it would update them twice (a known recompute pitfall). Its primitive
is therefore excluded (its output is kept, the convs and ReLUs around it are recomputed), so the
running statistics - and every number - equal those of recompute none.
"""

import mindspore.nn as nn

from nasfpn.model.resnet import ResNet

RECOMPUTE_CHOICES = ("none", "backbone", "neck", "all")


def backbone_cells(backbone: ResNet):
    """Every residual block of layer1..layer4."""
    return [
        block
        for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
        for block in stage
    ]


def neck_cells(neck):
    """Every merge cell of every NAS-FPN stage, and the lateral / P6-P7 convs."""
    return (
        [cell for stage in neck.fpn_stages for cell in stage]
        + list(neck.lateral_convs)
        + list(neck.extra_downsamples)
    )


def head_cells(head):
    """The per-level box and class subnets (4 convs each at full level resolution)."""
    return list(head.multi_loc_layers) + list(head.multi_cls_layers)


def recompute_cells(detector, which):
    """The cells `which` (one of RECOMPUTE_CHOICES) marks for recompute."""
    if which not in RECOMPUTE_CHOICES:
        raise ValueError(f"recompute must be one of {list(RECOMPUTE_CHOICES)}, got {which!r}")
    cells = []
    if which in ("backbone", "all"):
        cells += backbone_cells(detector.backbone)
    if which in ("neck", "all"):
        cells += neck_cells(detector.neck)
    if which == "all":
        cells += head_cells(detector.head)
    return cells


def apply_recompute(detector, which):
    """Mark the cells of `which` for recompute; returns how many were marked."""
    cells = recompute_cells(detector, which)
    for cell in cells:
        cell.recompute()
        for _, inner in cell.cells_and_names():
            if isinstance(inner, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                inner.bn_train.recompute(False)  # keep the running-statistics update single
    return len(cells)
