"""ImageNet MobileNetV2 weights for the NAS-FPNLite backbone (--backbone_pretrained with
--backbone=mobilenet_v2), with the strictness of the ResNet files (nasfpn/model/backbone_weights.py).

Two layouts are read:
- mindcv's checkpoints (.ckpt): our names (`features.<i>.layers.<j>`, BN gamma/beta/moving_*), plus
  the classifier (`classifier.*`), the last 1x1 conv to 1280 channels and optimizer state, ignored;
- torchvision state dicts (.safetensors, or .pth where torch is installed): `features.<k>.conv...`
  with BN weight/bias/running_*, renamed onto mindcv's; `classifier.*`, the 1280-channel conv
  (`features.18`) and the BN counters ignored.
The file's width is read from its stem conv; a file of another width is refused naming both.
"""

import re
from dataclasses import dataclass

import mindspore as ms
import numpy as np

from nasfpn.model.backbone_weights import (
    BN_COUNTER,
    TORCHVISION_BN_NAMES,
    BackboneFileError,
    BackboneWeights,
    is_detector_checkpoint,
    read_tensor_file,
)
from nasfpn.model.mobilenet_v2 import STEM_CHANNELS, block_plan, make_divisible
from nasfpn.model_files.checkpoint import is_optimizer_state, misfit_summary

MINDCV, TORCHVISION = "mindcv", "torchvision"
TV_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(.+)$")
# torchvision block sub-module -> mindcv's layers index, for blocks without / with the expansion conv
TV_BLOCK_PARTS = {
    False: {"0.0": "0", "0.1": "1", "1": "3", "2": "4"},
    True: {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"},
}


@dataclass
class MobileNetWeights(BackboneWeights):
    width: float = 1.0

    def summary(self):
        ignored = ", ".join(self.ignored) if self.ignored else "nothing"
        return (
            f"backbone from {self.path} ({self.layout} layout, MobileNetV2 width {self.width}, "
            f"{len(self.tensors)} tensors; ignored: {ignored})"
        )


def _file_width_channels(tensors, path):
    stem = tensors.get("features.0.weight", tensors.get("features.0.0.weight"))
    if stem is None or stem.ndim != 4:
        raise BackboneFileError(
            f"--backbone_pretrained={path}: holds no MobileNetV2 stem conv (features.0.weight in "
            "mindcv's layout, features.0.0.weight in torchvision's)"
        )
    return int(stem.shape[0])


def _torchvision_to_mindcv(name, value, num_blocks):
    """A torchvision MobileNetV2 tensor name in mindcv's names (a BN's `weight` is 1-D, a conv's 4-D)."""
    module, _, leaf = name.rpartition(".")
    if value.ndim == 1:
        leaf = TORCHVISION_BN_NAMES.get(leaf, leaf)
    if module == "features.0.0":
        return f"features.0.{leaf}"
    if module == "features.0.1":
        return f"features.1.{leaf}"
    match = TV_BLOCK.match(module)
    if match and 1 <= int(match.group(1)) <= num_blocks:
        block, part = int(match.group(1)), match.group(2)
        expanded = block > 1  # torchvision's first block has no expansion conv (t = 1)
        index = TV_BLOCK_PARTS[expanded].get(part)
        if index is not None:
            return f"features.{block + 2}.layers.{index}.{leaf}"
    return name  # left as it is: reported as not in the backbone


def _ignored(name, layout, last_feature):
    if name.startswith("classifier."):
        return "classifier"
    if layout == TORCHVISION and name.endswith(BN_COUNTER):
        return "BN step counters"
    if layout == MINDCV and is_optimizer_state(name):
        return "optimizer state"
    index = re.match(r"^features\.(\d+)\.", name)
    if index and int(index.group(1)) > last_feature:
        return "the 1280-channel head conv"
    return None


def read_mobilenet_weights(path, width):
    """The backbone tensors of `path` in our (mindcv's) names, for a MobileNetV2 of `width`."""
    tensors = read_tensor_file(path)
    if is_detector_checkpoint(list(tensors)):
        raise BackboneFileError(
            f"--backbone_pretrained={path} is a whole-detector checkpoint, not a backbone file: give it "
            "as --pre_trained"
        )
    layout = TORCHVISION if any(n.endswith((".running_mean", "." + BN_COUNTER)) for n in tensors) else MINDCV
    stem = _file_width_channels(tensors, path)
    if stem != make_divisible(STEM_CHANNELS * width):
        widths = [w for w in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4) if make_divisible(STEM_CHANNELS * w) == stem]
        raise BackboneFileError(
            f"--backbone_pretrained={path} holds a MobileNetV2 of width {' or '.join(map(str, widths)) or '?'} "
            f"(stem {stem} channels), the network's is {width} (--backbone_width={width}, stem "
            f"{make_divisible(STEM_CHANNELS * width)} channels): give a file of that width"
            + (f" or set --backbone_width={widths[-1]}" if widths else "")
        )
    num_blocks = len(block_plan(width))
    # torchvision numbers blocks from 1 and its 1280 conv is features.<num_blocks + 1>; mindcv's
    # stem is 3 cells, so its blocks are features.3 .. features.<num_blocks + 2>
    last_feature = num_blocks + (0 if layout == TORCHVISION else 2)
    ignored, kept = {}, {}
    for name, value in tensors.items():
        kind = _ignored(name, layout, last_feature)
        if kind:
            ignored[kind] = ignored.get(kind, 0) + 1
            continue
        kept[_torchvision_to_mindcv(name, value, num_blocks) if layout == TORCHVISION else name] = value
    return MobileNetWeights(path, layout, 0, kept, ignored, width=width)


def load_mobilenet_into(backbone, weights):
    """Assign `weights` to the MobileNetV2 cell `backbone`; nothing is assigned unless every
    parameter is found with its shape and no tensor is left over. Returns the count assigned."""
    wanted = {name.replace("._backbone.", "."): param for name, param in backbone.parameters_and_names()}
    missing = [name for name in wanted if name not in weights.tensors]
    wrong = [
        f"{name} {list(weights.tensors[name].shape)} (expected {list(param.shape)})"
        for name, param in wanted.items()
        if name in weights.tensors and tuple(weights.tensors[name].shape) != tuple(param.shape)
    ]
    unexpected = [name for name in weights.tensors if name not in wanted]
    if missing or wrong or unexpected:
        raise BackboneFileError(
            f"--backbone_pretrained={weights.path} ({weights.layout} layout) does not fit the MobileNetV2 "
            "backbone: " + misfit_summary(missing, wrong, "misfit", unexpected, "not in the backbone")
        )
    for name, param in wanted.items():
        param.set_data(ms.Tensor(np.ascontiguousarray(weights.tensors[name], dtype=np.float32)))
    return len(wanted)
