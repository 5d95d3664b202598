"""ImageNet backbone initialisation (--backbone_pretrained) and frozen stages (--backbone_frozen_stages).

Three file layouts are read (docs/training.md#starting-from-an-imagenet-backbone):
- the MindSpore model zoo's ResNet checkpoints (.ckpt): our names without `network.backbone.`,
  plus the classifier `end_point.*` and optimizer state;
- mindcv's ResNet checkpoints (.ckpt): the zoo's names with `down_sample` for `down_sample_layer`
  and the classifier `classifier.*`;
- torchvision / timm state dicts (.safetensors, or .pth where torch is installed): BN
  `weight/bias/running_mean/running_var`, `downsample.{0,1}`, the classifier `fc.*` and a
  `num_batches_tracked` counter per BN.
float16 and bfloat16 tensors (half-precision hub files) are upcast to float32, which holds both
exactly.

Loading is strict and all-or-nothing: the file's depth is read from its blocks per stage, then
every backbone parameter must be found exactly once with its shape before any is assigned; the
classifier, optimizer state and BN counters are left out by name, anything else is refused by name.
The layout guessed from the names is tried first, then the others; a file that fits none is
refused with the layouts tried and the closest one's misfits.
"""

import os
import shlex
import re
from dataclasses import dataclass, field

import mindspore as ms
import numpy as np

from nasfpn.model_files.checkpoint import is_metadata, is_optimizer_state, misfit_summary, read_checkpoint
from nasfpn.model_files.checkpoint import list_names
from nasfpn.model_files.integrity import DamagedFileError, check_weight_values
from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.model.resnet import RESNET_SPECS

ZOO, MINDCV, TORCHVISION = "zoo", "mindcv", "torchvision"
LAYOUTS = (ZOO, MINDCV, TORCHVISION)
DETECTOR_PREFIX = "network."
CLASSIFIER_PREFIXES = {ZOO: ("end_point.",), MINDCV: ("classifier.",), TORCHVISION: ("fc.",)}
# Half-precision dtypes upcast on reading (float32 holds every float16 and bfloat16 value exactly).
HALF_DTYPES = ("float16", "bfloat16")
BN_COUNTER = "num_batches_tracked"
# torchvision BN tensor -> ours (the conv weight is `weight` in both)
TORCHVISION_BN_NAMES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
OUR_BN_NAMES = {ours: theirs for theirs, ours in TORCHVISION_BN_NAMES.items()}
CKPT_SUFFIXES, SAFETENSORS_SUFFIXES, TORCH_SUFFIXES = (".ckpt",), (".safetensors",), (".pth", ".pt")
BLOCK_NAME = re.compile(r"^layer([1-4])\.(\d+)\.")
# The zoo's basic block (ResNet-18/34) names its two BNs bn1d / bn2d.
ZOO_BASIC_BLOCK_BN = re.compile(r"^(layer[1-4]\.\d+)\.bn([12])\.")


class BackboneFileError(UserError):
    """A --backbone_pretrained file that cannot be read, or does not fit the network's backbone."""


@dataclass
class BackboneWeights:
    """The tensors of a backbone file in the file's own names, with what it holds besides."""

    path: str
    layout: str
    depth: int
    tensors: dict  # file name -> numpy array (backbone tensors only, under `layout`)
    ignored: dict = field(default_factory=dict)  # what was left out -> count
    zoo_basic_names: bool = False  # block BNs named bn1d / bn2d (zoo ResNet-18/34)
    upcast: dict = field(default_factory=dict)  # half dtype -> tensors upcast to float32
    every_tensor: dict = field(default_factory=dict, repr=False)  # the file's tensors, for other layouts

    def summary(self):
        ignored = ", ".join(self.ignored) if self.ignored else "nothing"
        upcast = "".join(f", {n} {dtype} upcast to float32" for dtype, n in self.upcast.items())
        return (
            f"backbone from {self.path} ({self.layout} layout, ResNet-{self.depth}, "
            f"{len(self.tensors)} tensors{upcast}; ignored: {ignored})"
        )

    def as_layout(self, layout: str) -> "BackboneWeights":
        """These tensors read as a file of `layout` (its classifier and counters left out)."""
        kept, ignored = split_by_layout(self.every_tensor or self.tensors, layout)
        return BackboneWeights(
            self.path,
            layout,
            self.depth,
            kept,
            ignored,
            layout == ZOO and any(".bn1d." in name for name in kept),
            self.upcast,
            self.every_tensor,
        )


# ---- reading ----------------------------------------------------------------------------------
def read_tensor_file(path, key="--backbone_pretrained"):
    """name -> numpy array of a .ckpt, .safetensors or .pth file (no assumption on the names)."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"{key}={path}: file not found")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in CKPT_SUFFIXES:
        return {
            name: value.asnumpy()
            for name, value in read_checkpoint(path).items()
            if isinstance(value, ms.Parameter) and not is_metadata(name)
        }
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise BackboneFileError(
        f"{key}={path}: expected a .ckpt (MindSpore model zoo), .safetensors or "
        f".pth (torchvision / timm) file, got a '{suffix or 'suffix-less'}' file"
    )


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as exc:  # bf16 has no numpy dtype
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise BackboneFileError(
            f"--backbone_pretrained={path}: not a readable safetensors file ({detail})"
        ) from None


# The conversion a user runs where torch is; the paths come as arguments, not inside the program.
CONVERT_PROGRAM = (
    'import sys, torch, safetensors.torch as s; d = torch.load(sys.argv[1], map_location="cpu", '
    "weights_only=True); s.save_file({k: v.contiguous() for k, v in d.items()}, sys.argv[2])"
)


def conversion_command(path: str) -> str:
    """A shell command that converts the .pth `path` to .safetensors beside it. Every part is one
    shell word (shlex.quote), so no file name can end the quoting and run code when the line is
    pasted; weights_only=True keeps torch.load from running code that a crafted .pth holds."""
    converted = os.path.splitext(path)[0] + ".safetensors"
    return shlex.join(["python", "-c", CONVERT_PROGRAM, path, converted])


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise BackboneFileError(
            f"--backbone_pretrained={path}: a .pth file needs torch, which is not installed; convert it "
            f"to .safetensors where torch is, with: {conversion_command(path)}"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise BackboneFileError(
            f"--backbone_pretrained={path}: not a readable torch file ({exc.__class__.__name__})"
        ) from None
    for wrapper in ("state_dict", "model"):  # training scripts often nest the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise BackboneFileError(
            f"--backbone_pretrained={path}: expected a state dict, got a {type(state).__name__}"
        )
    return {
        name: value.detach().float().numpy() if value.is_floating_point() else value.numpy()
        for name, value in state.items()
        if torch.is_tensor(value)
    }


# ---- layout and depth -------------------------------------------------------------------------
def file_layout(names):
    """zoo, mindcv or torchvision, guessed from the BN, shortcut and classifier names."""
    if any(name.endswith((".running_mean", ".running_var", "." + BN_COUNTER)) for name in names):
        return TORCHVISION
    if any(".down_sample." in name or name.startswith(CLASSIFIER_PREFIXES[MINDCV]) for name in names):
        return MINDCV
    return ZOO


def split_by_layout(tensors: dict, layout: str) -> tuple:
    """(backbone tensors, what was left out -> count) of a file read as `layout`."""
    ignored, kept = {}, {}
    for name, value in tensors.items():
        kind = ignored_kind(name, layout)
        if kind:
            ignored[kind] = ignored.get(kind, 0) + 1
        else:
            kept[name] = value
    return kept, ignored


def upcast_half(tensors: dict) -> tuple:
    """(tensors with float16 / bfloat16 ones as float32, half dtype -> count upcast)."""
    counts, out = {}, {}
    for name, value in tensors.items():
        dtype = getattr(value, "dtype", None)
        if dtype is not None and dtype.name in HALF_DTYPES:
            counts[dtype.name] = counts.get(dtype.name, 0) + 1
            value = value.astype(np.float32)
        out[name] = value
    return out, counts


def ignored_kind(name, layout):
    """What a non-backbone entry is ('classifier', 'optimizer state', 'BN step counters'), or None."""
    if name.startswith(CLASSIFIER_PREFIXES[layout]):
        return "classifier"
    if layout == TORCHVISION and name.endswith(BN_COUNTER):
        return "BN step counters"
    if layout in (ZOO, MINDCV) and is_optimizer_state(name):
        return "optimizer state"
    return None


def resnet_depth_of(names):
    """The depth of the ResNet whose tensors are `names` (block kind and blocks per stage), or a
    description of what they hold when it is none of RESNET_SPECS."""
    blocks = [0, 0, 0, 0]
    for name in names:
        match = BLOCK_NAME.match(name)
        if match:
            stage, index = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    kind = "bottleneck" if any(name.startswith("layer1.0.conv3.") for name in names) else "basic"
    for depth, spec in RESNET_SPECS.items():
        if spec == (kind, tuple(blocks)):
            return depth, None
    return None, f"{tuple(blocks)} {kind} blocks per stage"


def is_detector_checkpoint(names):
    return any(name.startswith(DETECTOR_PREFIX) for name in names)


def read_backbone_weights(path, depth):
    """The backbone tensors of `path` for a ResNet-`depth` backbone; BackboneFileError for a file of
    another kind or depth. Name and shape checks against the network are in load_backbone_into."""
    tensors, upcast = upcast_half(read_tensor_file(path))
    names = list(tensors)
    if is_detector_checkpoint(names):
        raise BackboneFileError(
            f"--backbone_pretrained={path} is a whole-detector checkpoint "
            f"({DETECTOR_PREFIX}* names), not a backbone file: give it as "
            "--pre_trained (with --filter_weight=True for other classes)"
        )
    layout = file_layout(names)
    kept, ignored = split_by_layout(tensors, layout)
    file_depth, other = resnet_depth_of(kept)
    if not any(BLOCK_NAME.match(name) for name in kept):
        raise BackboneFileError(
            f"--backbone_pretrained={path}: holds no ResNet blocks (expected names "
            "such as conv1.weight and layer1.0.conv1.weight, in the model zoo's, mindcv's or "
            f"torchvision's layout); found {list_names(names, 4)}"
        )
    if file_depth != depth:
        held = f"a ResNet-{file_depth}" if file_depth else f"a ResNet with {other}"
        raise BackboneFileError(
            f"--backbone_pretrained={path} holds {held}, the network's backbone is "
            f"ResNet-{depth} (--backbone_depth={depth}): give a ResNet-{depth} file"
            + (f" or set --backbone_depth={file_depth}" if file_depth else "")
        )
    try:
        check_weight_values(kept, f"--backbone_pretrained={path}")
    except DamagedFileError as exc:
        raise BackboneFileError(str(exc)) from None
    zoo_basic_names = layout == ZOO and any(".bn1d." in name for name in kept)
    return BackboneWeights(path, layout, depth, kept, ignored, zoo_basic_names, upcast, tensors)


# ---- names and assignment -----------------------------------------------------------------------
def file_name_of(our_name, layout, zoo_basic_names=False):
    """The name of our backbone parameter `our_name` (e.g. layer1.0.bn1.gamma) in a file of `layout`."""
    if layout == ZOO:
        return ZOO_BASIC_BLOCK_BN.sub(r"\1.bn\2d.", our_name) if zoo_basic_names else our_name
    if layout == MINDCV:
        return our_name.replace(".down_sample_layer.", ".down_sample.")
    module, _, leaf = our_name.rpartition(".")
    module = module.replace("down_sample_layer.", "downsample.")
    return f"{module}.{OUR_BN_NAMES.get(leaf, leaf)}"


def layout_misfits(weights: "BackboneWeights", backbone) -> tuple:
    """(missing, misfit, unexpected, matched) of `weights` against the parameters of `backbone`:
    file names absent, tensors of another shape or not floating point, file names the backbone
    lacks; matched maps our name -> (Parameter, array)."""
    # amp O2 wraps each BN cell as <bn>._backbone: the file's names are those of the plain network
    wanted = {
        file_name_of(name.replace("._backbone.", "."), weights.layout, weights.zoo_basic_names): (name, param)
        for name, param in backbone.parameters_and_names()
    }
    missing, wrong, matched = [], [], {}
    for file_name, (name, param) in wanted.items():
        if file_name not in weights.tensors:
            missing.append(file_name)
            continue
        value = weights.tensors[file_name]
        if tuple(value.shape) != tuple(param.shape):
            wrong.append(f"{file_name} {list(value.shape)} (expected {list(param.shape)})")
        elif not np.issubdtype(value.dtype, np.floating):
            wrong.append(f"{file_name} of type {value.dtype} (expected floating point)")
        else:
            matched[name] = (param, value)
    unexpected = [name for name in weights.tensors if name not in wanted]
    return missing, wrong, unexpected, matched


def match_backbone(weights, backbone):
    """our name -> (Parameter, array) for every parameter of `backbone`, under the first layout of
    the file's guessed one, then the others, that fits; `weights` then names that layout.
    BackboneFileError listing the closest layout's missing, misshapen and unexpected tensors (in
    the file's names) when none fits."""
    tried = []
    for layout in (weights.layout, *(other for other in LAYOUTS if other != weights.layout)):
        candidate = weights if layout == weights.layout else weights.as_layout(layout)
        missing, wrong, unexpected, matched = layout_misfits(candidate, backbone)
        if not (missing or wrong or unexpected):
            weights.__dict__.update(candidate.__dict__)
            return matched
        tried.append((len(missing) + len(wrong) + len(unexpected), layout, missing, wrong, unexpected))
    _, layout, missing, wrong, unexpected = min(tried, key=lambda t: t[0])  # a tie keeps the guess
    raise BackboneFileError(
        f"--backbone_pretrained={weights.path} ({layout} layout) does not "
        f"fit the ResNet-{weights.depth} backbone: "
        + misfit_summary(missing, wrong, "misfit", unexpected, "not in the backbone")
        + f" (layouts tried: {', '.join(LAYOUTS)}; the closest shown)"
    )


def load_backbone_into(backbone, weights):
    """Assign `weights` (a BackboneWeights) to the ResNet cell `backbone`, BN moving statistics
    included; nothing is assigned unless every parameter fits. Returns the count assigned."""
    matched = match_backbone(weights, backbone)
    for param, value in matched.values():
        param.set_data(ms.Tensor(np.ascontiguousarray(value, dtype=np.float32)))
    return len(matched)


# ---- the reverse mistake: a backbone file given as --pre_trained ------------------------------
def backbone_file_hint(path: str, backbone=None, depth: int | None = None) -> str:
    """The message for a backbone-only file given where a whole detector is expected (--pre_trained),
    or "" when `path` is not one (unreadable files included: their own error stands). With the
    network's `backbone` (a ResNet-`depth`), the file is tried as --backbone_pretrained first: it
    is pointed there only when it loads there, else the message says why it does not."""
    try:
        names = list(read_tensor_file(path, key="--pre_trained"))
    except UserError:
        return ""
    if is_detector_checkpoint(names) or not any(BLOCK_NAME.match(n) for n in names):
        return ""
    layout = file_layout(names)
    if backbone is not None:
        try:
            weights = read_backbone_weights(path, depth)
            match_backbone(weights, backbone)
        except BackboneFileError as exc:
            reason = str(exc).removeprefix(f"--backbone_pretrained={path}").lstrip(": ")
            return (
                f"--pre_trained={path} holds only a backbone, not a detector, and does not load as "
                f"--backbone_pretrained either: {reason}"
            )
        layout = weights.layout
    return (
        f"--pre_trained={path} holds only a backbone ({layout} layout), not a detector: "
        "give it as --backbone_pretrained"
    )


# ---- frozen stages ------------------------------------------------------------------------------
def frozen_parts(backbone, stages):
    """The cells frozen by `stages` (mmdetection's frozen_stages): 0 none, k >= 1 the stem (conv1,
    bn1) and layer1..layer<k>."""
    if stages <= 0:
        return []
    if hasattr(backbone, "blocks_in_groups"):  # MobileNetV2: the stem and the first groups of blocks
        return list(backbone.features[: 3 + backbone.blocks_in_groups(stages)])
    return [backbone.conv1, backbone.bn1] + [getattr(backbone, f"layer{k}") for k in range(1, stages + 1)]


def freeze_backbone_stages(backbone, stages):
    """No gradient for the frozen parts' parameters (so the optimizer, built after this, leaves them
    out) and their BN on its moving statistics, also in training mode: `use_batch_statistics=False`
    is a constant of the cell, which set_train(True) does not change. Returns the parameters frozen."""
    frozen = []
    for part in frozen_parts(backbone, stages):
        for _, cell in part.cells_and_names():
            if hasattr(cell, "use_batch_statistics") and hasattr(cell, "moving_mean"):
                cell.use_batch_statistics = False
        for param in part.get_parameters():
            param.requires_grad = False
            frozen.append(param)
    return frozen
