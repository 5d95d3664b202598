"""Checkpoint I/O: strict loading of release-style files, atomic saving.

A checkpoint written by the release's training holds every network parameter as `network.<name>`
plus optimizer state (`moments.network.<name>`, `learning_rate`, `momentum`, `global_step`).
Loading takes the network parameters, ignores optimizer state, and refuses - before touching the
network - a file that lacks a parameter or has one of the wrong shape.
"""
import os

import mindspore as ms

from .atomic import atomic_path
from .errors import UserError

OPTIMIZER_KEYS = ("learning_rate", "momentum", "global_step")
OPTIMIZER_PREFIXES = ("moments.", "accum.", "scale_sense", "current_iterator_step",
                      "last_overflow_iterator_step", "epoch_num", "step_num", "loss_scale")


class CheckpointError(UserError):
    """A checkpoint that does not fit the network (missing / wrong-shaped parameters, bad file)."""


def is_optimizer_state(name):
    return name in OPTIMIZER_KEYS or name.startswith(OPTIMIZER_PREFIXES)


def _list(names, limit=8):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... (+{len(names) - limit} more)" if len(names) > limit else "")


def read_checkpoint(path):
    """name -> Parameter of a .ckpt file, with a clear error for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long messages
        raise CheckpointError(f"{path}: not a readable MindSpore checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def network_params_from(param_dict, net, path="checkpoint", skip=()):
    """Select and check the parameters of `net` in `param_dict`; raise CheckpointError if any is
    missing or has the wrong shape. `skip` lists name prefixes that may be absent (fine-tuning)."""
    wanted = {p.name: p for p in net.get_parameters()}
    missing, wrong, selected = [], [], {}
    for name, param in wanted.items():
        if any(name.startswith(s) for s in skip):
            continue
        if name not in param_dict:
            missing.append(name)
            continue
        value = param_dict[name]
        if tuple(value.shape) != tuple(param.shape):
            wrong.append(f"{name} {list(value.shape)} (expected {list(param.shape)})")
            continue
        selected[name] = value
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_list(missing)}")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape: {_list(wrong)}")
        raise CheckpointError(f"{path} does not fit the network: " + "; ".join(parts) +
                              ". Check img_shape/num_classes/backbone_depth/fpn_stages against the "
                              "checkpoint's training config.")
    return selected


def load_checkpoint_into(net, path, skip=(), expected_sha256=""):
    """Strictly load a (release-style) checkpoint into `net`; returns the names that were ignored.

    Nothing is assigned unless every parameter fits. Optimizer state is ignored.
    """
    if expected_sha256:
        from .deploy.hub import verify_sha256  # local import: deploy sits below model in the flow
        verify_sha256(path, expected_sha256)
    param_dict = read_checkpoint(path)
    selected = network_params_from(param_dict, net, path, skip)
    for name, value in selected.items():
        if value.dtype != ms.float32 and value.dtype in (ms.float16, ms.bfloat16, ms.float64):
            selected[name] = ms.Parameter(value.astype(ms.float32), name=name)
    not_loaded, _ = ms.load_param_into_net(net, selected, strict_load=True)
    if not_loaded and not skip:
        raise CheckpointError(f"{path}: parameters not loaded: {_list(not_loaded)}")
    return sorted(n for n in param_dict if n not in selected)


def save_checkpoint_atomic(obj, path, append_dict=None):
    """Save a cell or a parameter list to `path` via a temporary name, so a crash leaves no
    half-written file that looks complete."""
    if not path.endswith(".ckpt"):  # MindSpore would append it anyway
        path += ".ckpt"
    with atomic_path(path) as tmp:
        ms.save_checkpoint(obj, tmp, append_dict=append_dict)
    return path
