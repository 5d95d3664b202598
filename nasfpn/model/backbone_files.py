"""--backbone_pretrained for either backbone kind: ResNet files (nasfpn/model/backbone_weights.py)
or MobileNetV2 files (nasfpn/model/mobilenet_weights.py), read before any work and assigned
all-or-nothing by the trainer."""

from nasfpn.model.backbone_weights import load_backbone_into, read_backbone_weights
from nasfpn.model.mobilenet_weights import MobileNetWeights, load_mobilenet_into, read_mobilenet_weights

MOBILENET_V2 = "mobilenet_v2"


def read_backbone_file(path, backbone, depth, width):
    """The backbone tensors of `path` for the network's backbone (`backbone`: resnet or
    mobilenet_v2; `depth` for a ResNet, `width` for a MobileNetV2)."""
    if backbone == MOBILENET_V2:
        return read_mobilenet_weights(path, width)
    return read_backbone_weights(path, depth)


def load_backbone_file_into(backbone_cell, weights):
    """Assign what read_backbone_file read to the detector's backbone cell; returns the count."""
    if isinstance(weights, MobileNetWeights):
        return load_mobilenet_into(backbone_cell, weights)
    return load_backbone_into(backbone_cell, weights)
