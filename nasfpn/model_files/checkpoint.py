"""Checkpoint I/O: strict loading of release-style files, atomic saving.

A checkpoint written by the release's training holds every network parameter as `network.<name>`
plus optimizer state (`moments.network.<name>`, `learning_rate`, `momentum`, `global_step`).
Loading takes the network parameters, ignores optimizer state, and refuses - before touching the
network - a file that lacks a parameter, has one of the wrong shape, or holds network parameters
the network does not have (a checkpoint of a bigger member of the family, e.g. more fpn_stages).

A checkpoint written here also carries its model description (nasfpn/model_files/description.py) as one
string entry, `nasfpn_model`; it is not a parameter and loading leaves it out.

A checkpoint of a run trained with --ema also holds the moving average of every network
parameter as `ema.<name>` (e.g. `ema.network.backbone.conv1.weight`) and its update count
`ema.updates`. Loading ignores them unless asked for the average (`use_ema`): then each network
parameter comes from its `ema.` twin, as strictly as from the plain names.

Integrity (nasfpn/model_files/integrity.py): every checkpoint written here ends with MindSpore's CRC-32
trailer; reading checks it first and refuses a file whose CRC differs (DamagedCheckpointError), and
loading refuses weights with inf / NaN or a negative BatchNorm variance, naming the first one. A
file without the trailer (the release's, the published one) is read as before.

Saving goes through a temporary name (nasfpn/core/atomic.py) and never leaves a temporary behind when it
fails; a save killed outright leaves one, which `remove_stale_temporaries` clears on the next start.
"""

import logging
import os

import mindspore as ms
import numpy as np

from nasfpn.core.atomic import atomic_path
from nasfpn.core.errors import UserError
from nasfpn.core.files import verify_sha256
from nasfpn.model_files.description import METADATA_KEY
from nasfpn.model_files.integrity import DamagedFileError, check_weight_values, verify_checkpoint_crc
from nasfpn.core.storage import remove_stale_temporaries  # noqa: F401  (the checkpoint folder's cleaner)

OPTIMIZER_KEYS = ("learning_rate", "momentum", "global_step")
EMA_PREFIX = "ema."  # the moving average of the weights (nasfpn/training/ema.py)
EMA_UPDATES = EMA_PREFIX + "updates"
OPTIMIZER_PREFIXES = (
    "moments.",
    "accum.",
    "scale_sense",
    "current_iterator_step",
    "last_overflow_iterator_step",
    "epoch_num",
    "step_num",
    "loss_scale",
)


class CheckpointError(UserError):
    """A checkpoint that does not fit the network (missing / extra / wrong-shaped parameters, bad file).
    `wrong_shapes`: (name, shape in the file, shape in the network) of each misshapen parameter."""

    def __init__(self, message, wrong_shapes=()):
        super().__init__(message)
        self.wrong_shapes = tuple(wrong_shapes)


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose CRC differs from the one it records, or whose weights are impossible
    (inf / NaN, a negative BatchNorm variance): nasfpn/model_files/integrity.py."""


# Options that change which parameters (or shapes) the network has: named in refusals.
NETWORK_SHAPE_OPTIONS = (
    "img_shape/num_classes/backbone_depth/fpn_stages/fpn_channels/head_convs/cls_prior_probability"
)


def is_optimizer_state(name):
    return name in OPTIMIZER_KEYS or name.startswith(OPTIMIZER_PREFIXES)


def is_ema_state(name):
    return name.startswith(EMA_PREFIX)


def holds_ema(param_dict):
    return any(is_ema_state(name) for name in param_dict)


def ema_weights_view(param_dict):
    """network name -> its moving average, from the `ema.<name>` entries of a checkpoint."""
    return {
        name[len(EMA_PREFIX) :]: value
        for name, value in param_dict.items()
        if is_ema_state(name) and name != EMA_UPDATES
    }


def is_metadata(name):
    """The model description entry (a str, not a parameter)."""
    return name == METADATA_KEY


def list_names(names, limit=8):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... (+{len(names) - limit} more)" if len(names) > limit else "")


def misfit_summary(missing, wrong, wrong_label, unexpected, unexpected_label):
    """'N missing: a, b; M <wrong_label>: ...; K <unexpected_label>: ...' for the non-empty lists."""
    parts = [
        f"{len(names)} {label}: {list_names(names)}"
        for names, label in ((missing, "missing"), (wrong, wrong_label), (unexpected, unexpected_label))
        if names
    ]
    return "; ".join(parts)


def read_checkpoint(path):
    """name -> Parameter of a .ckpt file, with a clear error for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        verify_checkpoint_crc(path)
    except DamagedFileError as exc:
        raise DamagedCheckpointError(str(exc)) from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long messages
        raise CheckpointError(
            f"{path}: not a readable MindSpore checkpoint ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def network_params_from(param_dict, net, path="checkpoint", skip=()):
    """Select and check the parameters of `net` in `param_dict`; raise CheckpointError if any is
    missing or has the wrong shape, or if the file holds network parameters `net` does not have.
    Optimizer state is ignored. `skip` lists name prefixes left out on both sides (fine-tuning)."""
    wanted = {p.name: p for p in net.get_parameters()}
    missing, wrong, wrong_shapes, selected = [], [], [], {}
    for name, param in wanted.items():
        if name.startswith(tuple(skip)):
            continue
        if name not in param_dict:
            missing.append(name)
            continue
        value = param_dict[name]
        if tuple(value.shape) != tuple(param.shape):
            wrong.append(f"{name} {list(value.shape)} (expected {list(param.shape)})")
            wrong_shapes.append((name, tuple(value.shape), tuple(param.shape)))
            continue
        selected[name] = value
    unexpected = [
        name
        for name in param_dict
        if name not in wanted
        and not is_optimizer_state(name)
        and not is_metadata(name)
        and not is_ema_state(name)
        and not name.startswith(tuple(skip))
    ]
    if missing or wrong or unexpected:
        raise CheckpointError(
            f"{path} does not fit the network: "
            + misfit_summary(missing, wrong, "with the wrong shape", unexpected, "not in the network")
            + f". Check {NETWORK_SHAPE_OPTIONS} against the checkpoint's training config.",
            wrong_shapes,
        )
    return selected


def check_checkpoint_values(selected, source):
    """DamagedCheckpointError naming the first parameter of `selected` (name -> Parameter) that holds
    inf / NaN or a negative BatchNorm variance."""
    try:
        check_weight_values(selected, source)
    except DamagedFileError as exc:
        raise DamagedCheckpointError(str(exc)) from None


def load_checkpoint_into(net, path, skip=(), expected_sha256="", use_ema=False):
    """Strictly load a (release-style) checkpoint into `net`; returns the names that were ignored.

    Nothing is assigned unless every parameter fits and every value is possible (finite, BatchNorm
    variances >= 0). Optimizer state is ignored. With `use_ema`,
    a checkpoint that holds EMA weights gives those (one holding none, its plain weights); the
    choice is logged either way when the file holds them.
    """
    if expected_sha256:
        verify_sha256(path, expected_sha256)
    param_dict = read_checkpoint(path)
    file_names = {name: name for name in param_dict}
    source = param_dict
    if holds_ema(param_dict):
        if use_ema:
            source = ema_weights_view(param_dict)
            file_names = {name: EMA_PREFIX + name for name in source}
            logging.getLogger("nasfpn").info("%s: loading its EMA weights (ema.*)", path)
        else:
            logging.getLogger("nasfpn").info(
                "%s holds EMA weights (ema.*); loading its trained weights instead (--use_ema=False)", path
            )
    label = f"{path} (its EMA weights, ema.*)" if source is not param_dict else path
    selected = network_params_from(source, net, label, skip)
    check_checkpoint_values(selected, label)
    for name, value in selected.items():
        if value.dtype != ms.float32 and value.dtype in (ms.float16, ms.bfloat16, ms.float64):
            selected[name] = ms.Parameter(value.astype(ms.float32), name=name)
    not_loaded, _ = ms.load_param_into_net(net, selected, strict_load=True)
    if not_loaded and not skip:
        raise CheckpointError(f"{path}: parameters not loaded: {list_names(not_loaded)}")
    used = {file_names[name] for name in selected}
    return sorted(n for n in param_dict if n not in used and not is_metadata(n))


def mindspore_temporary(path):
    """The name ms.save_checkpoint writes before renaming to `path` (its extension becomes .tmp)."""
    return os.path.splitext(path)[0] + ".tmp"


def save_checkpoint_atomic(obj, path, append_dict=None):
    """Save a cell or a parameter list to `path` via a temporary name, so a crash leaves no
    half-written file that looks complete, and a failed write (full disk) leaves no temporary.
    The file ends with MindSpore's CRC-32 trailer, which every reader here checks first
    (nasfpn/model_files/integrity.py)."""
    if not path.endswith(".ckpt"):  # MindSpore would append it anyway
        path += ".ckpt"
    with atomic_path(path) as tmp:
        try:
            ms.save_checkpoint(obj, tmp, append_dict=append_dict, crc_check=True)
        except BaseException:
            # MindSpore writes <tmp stem>.tmp and renames it; a failed write leaves that one behind.
            if os.path.exists(mindspore_temporary(tmp)):
                os.remove(mindspore_temporary(tmp))
            raise
    return path


def non_finite_parameters(cell):
    """(name, non-finite count, size) for each floating-point parameter of `cell` (a cell or a list
    of parameters) that holds inf or NaN - weights, BatchNorm statistics, optimizer moments alike."""
    bad = []
    for param in cell.get_parameters() if hasattr(cell, "get_parameters") else cell:
        values = param.asnumpy()
        if not np.issubdtype(values.dtype, np.floating):
            continue
        count = values.size - int(np.count_nonzero(np.isfinite(values)))
        if count:
            bad.append((param.name, count, values.size))
    return bad
