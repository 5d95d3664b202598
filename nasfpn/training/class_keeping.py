"""Fine-tuning that keeps what a detector knows: --pre_trained with --filter_weight=True (and
--keep_class_rows=True, the default) loads every parameter of the file, and the final
classification conv of each level gets, for each class of this run whose name is a class of the
file, that class's rows (all anchors of a cell) and the background's; the run's other classes keep
the rows the head was initialised with (with --cls_prior_probability, the prior bias).

The file's class names are the list it carries (checkpoints written here carry one,
nasfpn/model_files/description.py); a file without one whose head has 81 classes - the published COCO
checkpoint, the release's - is taken to have the release's COCO classes (default_config.yaml's
coco_classes). Names are matched exactly, case included (nasfpn/model/retina_head.py:class_row_map).
"""

from dataclasses import dataclass, field

import mindspore as ms
import numpy as np

from nasfpn.model_files.checkpoint import (
    CheckpointError,
    ema_weights_view,
    holds_ema,
    network_params_from,
    read_checkpoint,
    check_checkpoint_values,
)
from nasfpn.data.coco_format import release_class_names
from nasfpn.model.retina_head import class_row_map, remap_class_channels
from nasfpn.model_files.description import read_description


def source_class_names(description, num_source_classes):
    """(class names of a pre-trained file, where they come from), or (None, why not)."""
    if description is not None and description.class_names is not None:
        return list(description.class_names), "the class list it carries"
    release = release_class_names()
    if num_source_classes == len(release):
        return release, (
            f"no class list in the file: its {num_source_classes}-class head is taken "
            "as the release's COCO classes"
        )
    return None, (
        f"it carries no class list and its head has {num_source_classes} classes, not the "
        f"release's {len(release)} COCO classes"
    )


@dataclass
class KeptClasses:
    """What load_keeping_classes did: (name, source index, run's index) of each kept class
    (background included), (name, run's index) of each new one, the file's names left out."""

    source: str
    kept: list = field(default_factory=list)
    new: list = field(default_factory=list)
    left_out: list = field(default_factory=list)

    def describe(self, path):
        kept = ", ".join(f"{name} ({src} -> {dst})" for name, src, dst in self.kept)
        new = ", ".join(f"{name} ({dst})" for name, dst in self.new) or "none"
        shown = self.left_out[:8] + (
            [f"... (+{len(self.left_out) - 8} more)"] if len(self.left_out) > 8 else []
        )
        return (
            f"fine-tuning from {path} ({self.source}): classes kept by name with their class-head "
            f"rows: {kept}; new, from the head's initialisation: {new}; left out: "
            f"{', '.join(shown) or 'none'}"
        )


def final_class_convs(net):
    """[(weight Parameter, bias Parameter or None)] of the last conv of each level's
    classification subnet of `net` (a wrapper holding the detector as `network`)."""
    convs = []
    for subnet in net.network.head.multi_cls_layers:
        last = subnet.feats[len(subnet.feats) - 1]
        convs.append((last.weight, last.bias if last.has_bias else None))
    return convs


def bias_name(weight_name):
    return weight_name[: -len("weight")] + "bias"


def _source_class_count(params, convs, anchors_per_cell, path):
    """Classes of the file's head, checked on every level's final classification conv."""
    counts = set()
    for weight, _ in convs:
        if weight.name not in params:
            raise CheckpointError(
                f"{path} has no {weight.name}: not a detector of this family "
                "(or built with another --head_convs)"
            )
        shape = tuple(params[weight.name].shape)
        if shape[0] % anchors_per_cell or shape[1:] != tuple(weight.shape[1:]):
            raise CheckpointError(
                f"{path}: {weight.name} is {list(shape)}, expected "
                f"[{anchors_per_cell} x classes, {', '.join(map(str, weight.shape[1:]))}]"
                f" (check fpn_channels / aspect_ratios / num_scales)",
                [(weight.name, shape, tuple(weight.shape))],
            )
        counts.add(shape[0] // anchors_per_cell)
    if len(counts) != 1:
        raise CheckpointError(f"{path}: its levels' class heads predict {sorted(counts)} classes")
    return counts.pop()


def _check_biases(params, convs, path):
    """A file whose class head has biases into a network without: the kept classes would lose
    them (their scores would change), so refuse before anything is assigned."""
    for weight, bias in convs:
        if bias is None and bias_name(weight.name) in params:
            raise CheckpointError(
                f"{path}: its class head has biases ({bias_name(weight.name)}) and "
                "this network's has none (--cls_prior_probability=0); give "
                "--cls_prior_probability > 0 (e.g. 0.01, the new classes' prior) so "
                "the kept classes keep their biases"
            )


def _as_float32(value):
    return np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value, np.float32)


def remapped_class_convs(params, convs, row_map, anchors_per_cell):
    """name -> new value of the final classification convs' weights and biases. A kept class of a
    file without biases gets bias 0 (its logits stay the file's); new classes keep the net's."""
    values = {}
    for weight, bias in convs:
        values[weight.name] = remap_class_channels(
            _as_float32(params[weight.name]), weight.asnumpy(), row_map, anchors_per_cell
        )
        if bias is not None:
            num_source = params[weight.name].shape[0]
            stored = params.get(bias_name(weight.name))
            source = _as_float32(stored) if stored is not None else np.zeros(num_source, np.float32)
            values[bias.name] = remap_class_channels(source, bias.asnumpy(), row_map, anchors_per_cell)
    return values


def network_weights_of(path, use_ema, log):
    """The file's network entries: its EMA weights (ema.*) when it holds them and `use_ema`, else
    its trained ones (as nasfpn/model_files/checkpoint.py:load_checkpoint_into chooses)."""
    params = read_checkpoint(path)
    if not holds_ema(params):
        return params
    if use_ema:
        log.info("%s: loading its EMA weights (ema.*)", path)
        return ema_weights_view(params)
    log.info("%s holds EMA weights (ema.*); loading its trained weights instead (--use_ema=False)", path)
    return params


def load_keeping_classes(net, path, run_class_names, anchors_per_cell, log, use_ema=True):
    """Load `path` into `net` keeping the classes whose names the run shares with the file;
    returns the KeptClasses, or None (nothing loaded, a warning logged) when the file's or the
    run's class names are not known: the caller then drops the whole class head as the release
    does. Nothing is assigned unless every parameter fits. `use_ema`: a file's EMA weights when
    it holds them."""
    params = network_weights_of(path, use_ema, log)
    convs = final_class_convs(net)
    num_source = _source_class_count(params, convs, anchors_per_cell, path)
    source_names, source = source_class_names(read_description(path), num_source)
    if source_names is None or run_class_names is None:
        why = (
            source
            if source_names is None
            else "this run's class names are not known (no training annotation file)"
        )
        log.warning(
            "--filter_weight=True: no class of %s kept by name (%s); its whole class head "
            "starts from the initialisation",
            path,
            why,
        )
        return None
    if len(source_names) != num_source:
        raise CheckpointError(f"{path} names {len(source_names)} classes but its head predicts {num_source}")
    _check_biases(params, convs, path)
    skip = [w.name for w, _ in convs] + [bias_name(w.name) for w, _ in convs]
    selected = network_params_from(params, net, path, skip=tuple(skip))
    row_map = class_row_map(source_names, run_class_names)
    values = {name: _as_float32(value) for name, value in selected.items()}
    values.update(remapped_class_convs(params, convs, row_map, anchors_per_cell))
    check_checkpoint_values(values, path)
    not_loaded, _ = ms.load_param_into_net(
        net,
        {name: ms.Parameter(ms.Tensor(value), name=name) for name, value in values.items()},
        strict_load=True,
    )
    if not_loaded:
        raise CheckpointError(f"{path}: parameters not loaded: {', '.join(sorted(not_loaded)[:8])}")
    result = KeptClasses(source)
    for index, name in enumerate(run_class_names):
        if row_map[index] >= 0:
            result.kept.append((name, int(row_map[index]), index))
        else:
            result.new.append((name, index))
    shared = set(run_class_names[1:])
    result.left_out = [name for name in source_names[1:] if name not in shared]
    log.info("%s", result.describe(path))
    return result
