"""What a checkpoint or an exported model says about itself: the network options it was built with
and its class list (docs/checkpoints.md).

One JSON text under the key `nasfpn_model`:
- in a .ckpt, as an extra entry of `save_checkpoint(..., append_dict=...)` (`load_checkpoint`
  returns it as a str, never as a Parameter);
- in an .onnx file, as an entry of the model's `metadata_props`;
- in a .mindir file, as an entry of the ModelProto's `user_info` key/value list;
- beside an .air file as `<name>.air.json` (the format has no place for it);
- in an OpenVINO IR (.xml) converted from such an .onnx, in its `<rt_info><framework>` (OpenVINO
  copies metadata_props there).

A file without it (the release's checkpoints, the published one) describes nothing: the config's
values are used as before. With it, a value the user did not set is taken from the file, and a value
the user set that differs is refused, naming both values and the file.
"""

import json
import os
from dataclasses import dataclass
from typing import Optional

from nasfpn.core.atomic import atomic_path, write_bytes_atomic
from nasfpn.config.flat import ConfigError, coerce_value
from nasfpn.config.pyramid import RELEASE_STAGE, resolve_pyramid_spec, spec_to_plain
from nasfpn.model_files.integrity import verify_checkpoint_crc

METADATA_KEY = "nasfpn_model"
FORMAT_VERSION = 1

# Options that decide which parameters the network has and their shapes: a checkpoint loads only
# into a network built with its values.
PARAMETER_OPTIONS = (
    "num_classes",
    "backbone_depth",
    "fpn_channels",
    "fpn_stages",
    "head_convs",
    "cls_prior_probability",
    "aspect_ratios",
    "num_scales",
)
# The paper's family (docs/family.md), recorded since these options came:
# a file without them was built with these, the release's, values.
FAMILY_DEFAULTS = {
    "backbone": "resnet",
    "backbone_width": 1.0,
    "fpn_spec": None,
    "separable_conv": False,
    "fpn_combine": "nasfpn",
    "activation": "relu",
    "deep_supervision": False,
}
PARAMETER_OPTIONS += ("backbone", "backbone_width", "fpn_spec", "separable_conv")
# Options that change the outputs of the same parameters: the input size, the anchors, the box
# coding, the pyramid's combine functions and activation.
INPUT_OPTIONS = ("img_shape", "steps", "anchor_size", "prior_scaling", "fpn_combine", "activation")
# How the parameters were trained, where it decides what the file can do (its early exits).
TRAINING_OPTIONS = ("deep_supervision",)
NETWORK_OPTIONS = PARAMETER_OPTIONS + INPUT_OPTIONS + TRAINING_OPTIONS
# Options that follow the class list; fine-tuning with --filter_weight replaces the class head.
CLASS_OPTIONS = ("num_classes", "cls_prior_probability")
CLASS_LIST_KEY = "coco_classes"
# The post-processing a detections graph runs inside itself (nasfpn/deploy/detections_graph.py):
# the config keys it was exported with, and the per-image cap.
DETECTION_OPTIONS = ("min_score", "nms_threshold", "max_boxes")
DETECTIONS_GRAPH_KEYS = DETECTION_OPTIONS + ("max_detections", "box_order")


class ModelDescriptionError(ConfigError):
    """A model file's description that contradicts the config, or that cannot be read."""


@dataclass(frozen=True)
class ModelDescription:
    """options: NETWORK_OPTIONS -> value; class_names: background first (None: not known);
    category_ids: the dataset's category id of class 1, 2, ... (None where not known);
    detections_graph: None for a model whose outputs are boxes and scores, else the
    post-processing inside its graph (DETECTIONS_GRAPH_KEYS -> value; export --export_detections)."""

    options: dict
    class_names: Optional[tuple] = None
    category_ids: Optional[tuple] = None
    detections_graph: Optional[dict] = None

    @classmethod
    def of_sections(cls, model, anchors, class_names=None, category_ids=None):
        """The description of the network that the model and anchors sections build."""
        options = {
            key: _plain(getattr(model if key in model.keys() else anchors, key)) for key in NETWORK_OPTIONS
        }
        options["fpn_spec"] = plain_pyramid_spec(model.fpn_spec)
        names = tuple(class_names) if class_names is not None else None
        ids = tuple(category_ids) if category_ids is not None else None
        if names is not None and len(names) != model.num_classes:
            raise ValueError(f"{len(names)} class names for num_classes={model.num_classes}")
        if ids is not None and names is not None and len(ids) != len(names) - 1:
            raise ValueError(f"{len(ids)} category ids for {len(names) - 1} classes")
        return cls(options, names, ids)

    def to_json(self):
        classes = None
        if self.class_names is not None:
            ids = self.category_ids or (None,) * (len(self.class_names) - 1)
            classes = [{"name": name, "category_id": cid} for name, cid in zip(self.class_names[1:], ids)]
        data = {
            "format": FORMAT_VERSION,
            "options": self.options,
            "background": self.class_names[0] if self.class_names else None,
            "classes": classes,
        }
        if self.detections_graph is not None:
            data["detections_graph"] = self.detections_graph
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text, source):
        try:
            data = json.loads(text)
            options = data["options"]
            if isinstance(options, dict):
                options = {**FAMILY_DEFAULTS, **options}
            if not isinstance(options, dict) or set(NETWORK_OPTIONS) - set(options):
                raise KeyError(f"options lack {sorted(set(NETWORK_OPTIONS) - set(options or {}))}")
            classes = data.get("classes")
            names = ids = None
            if classes is not None:
                names = (str(data.get("background") or "background"), *(str(c["name"]) for c in classes))
                ids = tuple(c.get("category_id") for c in classes)
            graph = data.get("detections_graph")
            if graph is not None and (not isinstance(graph, dict) or set(DETECTIONS_GRAPH_KEYS) - set(graph)):
                raise KeyError(
                    f"detections_graph lacks {sorted(set(DETECTIONS_GRAPH_KEYS) - set(graph or {}))}"
                )
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelDescriptionError(
                f"{source}: its '{METADATA_KEY}' entry is not a model "
                f"description ({exc.__class__.__name__}: {exc})"
            ) from None
        return cls({key: options[key] for key in NETWORK_OPTIONS}, names, ids, graph)

    def category_of_class(self):
        """class index -> category id, for the classes whose id is known."""
        return {index: cid for index, cid in enumerate(self.category_ids or (), start=1) if cid is not None}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# ---- reading and writing the files -------------------------------------------------------------


def description_in_checkpoint(path):
    """The ModelDescription stored in a .ckpt file, or None (a release-style checkpoint)."""
    import mindspore as ms

    if not os.path.isfile(path):
        return None  # the loader names the missing file
    try:
        verify_checkpoint_crc(path)  # a damaged file is refused before its description is trusted
    except OSError:
        return None  # unreadable: the strict loader reports it
    try:
        entries = ms.load_checkpoint(path, choice_func=lambda name: name == METADATA_KEY)
    except Exception:  # pylint: disable=broad-except  (unreadable: the strict loader reports it)
        return None
    text = entries.get(METADATA_KEY)
    return ModelDescription.from_json(text, path) if isinstance(text, str) else None


def checkpoint_entries(description):
    """The append_dict that stores `description` in a checkpoint (empty without one)."""
    return {METADATA_KEY: description.to_json()} if description is not None else {}


def _onnx_description(path):
    # Read through ONNX Runtime, not the onnx package: onnx's protobuf runtime, imported before
    # MindSpore's generated _pb2 modules, makes MindSpore's import fail.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception:  # pylint: disable=broad-except  (not ONNX: the runtime reports it)
        return None
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return ModelDescription.from_json(text, path) if text else None


def _mindir_description(path):
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except Exception:  # pylint: disable=broad-except  (not MINDIR: the runtime reports it)
        return None
    texts = [entry.value for entry in model.user_info if entry.key == METADATA_KEY]
    return ModelDescription.from_json(texts[-1], path) if texts else None


def _openvino_ir_description(path):
    # OpenVINO keeps an ONNX file's metadata_props in the IR's <rt_info><framework>: an IR converted
    # from our .onnx carries its description. Read as XML, so no OpenVINO is needed.
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None  # not an IR: the runtime reports it
    entry = root.find(f"./rt_info/framework/{METADATA_KEY}")
    text = entry.get("value") if entry is not None else None
    return ModelDescription.from_json(text, path) if text else None


def sidecar_path(path):
    return path + ".json"


def _sidecar_description(path):
    side = sidecar_path(path)
    if not os.path.isfile(side):
        return None
    with open(side, encoding="utf-8") as f:
        return ModelDescription.from_json(f.read(), side)


def read_description(path):
    """The description carried by a .ckpt, .onnx, .mindir, OpenVINO .xml (or beside an .air) file,
    else None."""
    if not path or not os.path.isfile(path):
        return None
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".ckpt":
        return description_in_checkpoint(path)
    if suffix == ".onnx":
        return _onnx_description(path)
    if suffix == ".mindir":
        return _mindir_description(path)
    if suffix == ".xml":
        return _openvino_ir_description(path)
    return _sidecar_description(path)


def write_onnx_description(path, description):
    """Put `description` into the ONNX file's metadata_props (rewrites the file in place)."""
    import onnx

    model = onnx.load(path)
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=description.to_json())
    with atomic_path(path) as tmp:  # MindSpore leaves its export read-only: replace, not rewrite
        onnx.save(model, tmp)


def write_mindir_description(path, description):
    """Put `description` into the MINDIR file's user_info (rewrites the file in place)."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    # user_info is a list of key/value entries in this protobuf (not a map)
    kept = [(entry.key, entry.value) for entry in model.user_info if entry.key != METADATA_KEY]
    del model.user_info[:]
    for key, value in kept + [(METADATA_KEY, description.to_json())]:
        model.user_info.add(key=key, value=value)
    write_bytes_atomic(path, model.SerializeToString())


def write_sidecar_description(path, description):
    """`<path>.json` beside a model format that cannot hold the description (AIR)."""
    return write_bytes_atomic(sidecar_path(path), (description.to_json() + "\n").encode("utf-8"))


def write_description(path, description):
    """Store `description` in (or, for AIR, beside) the exported model at `path`."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        write_onnx_description(path, description)
    elif suffix == ".mindir":
        write_mindir_description(path, description)
    else:
        write_sidecar_description(path, description)


# ---- the config against the file ---------------------------------------------------------------


def _same(key, given, stored):
    if key == "fpn_spec":  # a file path or inline cells against the file's cells
        return plain_pyramid_spec(given) == plain_pyramid_spec(stored)
    return coerce_value(key, stored, given) == given if given is not None else stored is None


def plain_pyramid_spec(value):
    """fpn_spec as a model file stores it: None for the release's stage, else the list of cells."""
    spec = resolve_pyramid_spec(value)
    return None if spec == RELEASE_STAGE else spec_to_plain(spec)


def _shown(value):
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def apply_description(cfg, description, source, keys=NETWORK_OPTIONS, lenient=()):
    """`cfg` with the file's values of `keys` for the keys the user did not set; raises
    ModelDescriptionError for a key the user set to another value, naming both and the file.
    Keys in `lenient` keep the user's value (returned in the second element as (key, user's, file's))."""
    if description is None:
        return cfg, []
    changes, kept = {}, []
    for key in keys:
        given, stored = getattr(cfg, key), description.options[key]
        if _same(key, given, stored):
            continue
        if key not in cfg.explicit_keys:
            changes[key] = stored
        elif key in lenient:
            kept.append((key, given, stored))
        else:
            raise ModelDescriptionError(
                f"--{key}={_shown(given)} contradicts {source}, which was built with "
                f"{key}={_shown(stored)}; leave --{key} out to use the file's value"
            )
    names = description.class_names
    if (
        names is not None
        and "num_classes" in keys
        and CLASS_LIST_KEY in cfg.explicit_keys
        and list(cfg.coco_classes) != list(names)
    ):
        raise ModelDescriptionError(
            f"--{CLASS_LIST_KEY}={_shown(list(cfg.coco_classes)[:6])}{'...' if len(cfg.coco_classes) > 6 else ''} "
            f"contradicts {source}, whose classes are {_shown(list(names)[:6])}"
            f"{'...' if len(names) > 6 else ''}; leave --{CLASS_LIST_KEY} out to use the file's"
        )
    return (cfg.replace(**changes, explicit=False) if changes else cfg), kept


def model_classes(model, description):
    """(class names background first, class index -> category id) of the model: the file's when it
    carries them, else the model section's coco_classes when it has num_classes names, else
    (None, {})."""
    if description is not None and description.class_names is not None:
        return list(description.class_names), description.category_of_class()
    return model.class_names(), {}


def config_for_model(cfg, path):
    """(cfg completed and checked against the description `path` carries, the description or
    None). A file without one leaves cfg as it is."""
    description = read_description(path)
    cfg, _ = apply_description(cfg, description, path)
    changes = graph_postprocess_changes(cfg.postprocess, cfg.explicit_keys, description, path)
    return (cfg.replace(**changes, explicit=False) if changes else cfg), description


def graph_postprocess_changes(postprocess, explicit_keys, description, source):
    """For a detections graph: the post-processing values baked into the graph (min_score,
    nms_threshold, max_boxes) where the postprocess section differs, so results and metrics.json
    state them; a value the user set (`explicit_keys`) to something else is a
    ModelDescriptionError (the graph cannot change it). {} for other models."""
    graph = description.detections_graph if description is not None else None
    if graph is None:
        return {}
    changes = {}
    for key in DETECTION_OPTIONS:
        given, stored = getattr(postprocess, key), graph[key]
        if coerce_value(key, stored, given) == given:
            continue
        if key in explicit_keys:
            raise ModelDescriptionError(
                f"--{key}={_shown(given)} contradicts {source}, a detections graph that applies "
                f"{key}={_shown(stored)} inside itself; leave --{key} out, or export again with "
                f"--{key}={_shown(given)}"
            )
        changes[key] = stored
    return changes
