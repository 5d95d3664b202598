"""An ONNX graph that ends in final detections (export.py --export_detections=True).

The exported network's outputs, boxes [N, A, 4] (normalised y1, x1, y2, x2) and sigmoid scores
[N, A, C] (column 0 background), go through the post-processing of
nasfpn/inference/detections.py written with standard ONNX ops (opset 13), so a deployer needs
nothing after the graph:

- the anchors with a foreground score > min_score in some image (Slice, ReduceMax, NonZero,
  Gather), their boxes scaled to the network input's pixels (Mul);
- per class 1..C-1 (Transpose, Slice): scores > min_score, greedy NMS with IoU > nms_threshold
  suppressing, at most max_boxes per class (NonMaxSuppression, its own score threshold);
- per image the max_detections best by score (TopK over the image's selected boxes), padded.

Outputs (names DETECTION_OUTPUTS):
  detection_boxes   [N, D, 4] float32 (x1, y1, x2, y2) in pixels of the network input
  detection_scores  [N, D]    float32, descending; 0 after the count
  detection_classes [N, D]    int64 class index 1..C-1 (the model's class list); 0 after the count
  num_detections    [N]       int64 rows of each image that are detections

One difference from the numpy post-processing, by design: ONNX NonMaxSuppression measures IoU
with continuous areas, (x2 - x1) * (y2 - y1), while the release's NMS adds one pixel to each side
("+1" convention, docs/conventions.md#post-processing-and-nms). The "+1" raises the IoU of two
overlapping boxes, most for small boxes, so the graph suppresses a little less and keeps some
boxes the numpy path drops (docs/deployment.md gives the measured mAP difference). A per-image
cap (max_detections) is new: the numpy path has only the per-class one. At an IoU exactly equal
to nms_threshold OpenVINO's NonMaxSuppression suppresses (ONNX Runtime and numpy do not).

The graph is built with onnx.helper and appended to the raw export. `onnx` is imported inside
the functions: imported before MindSpore, its protobuf runtime breaks MindSpore's import.
"""

import numpy as np

from nasfpn.core.errors import UserError
from nasfpn.inference.detections import DETECTION_OUTPUTS, is_detections_signature

RAW_OUTPUTS = 2
OPSET = 13
# Scores are sigmoids in [0, 1]: -1 marks the padding of TopK's input.
NOT_A_CANDIDATE = -1.0


class DetectionsGraphError(UserError):
    """A model file that is not the kind of graph asked for (raw outputs or detections)."""


def _const(helper, name, array):
    from onnx import numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name))


def detection_nodes(
    boxes,
    scores,
    batch_size,
    num_anchors,
    num_classes,
    img_shape,
    min_score=0.1,
    nms_threshold=0.6,
    max_boxes=100,
    max_detections=100,
    prefix="det/",
):
    """The ONNX nodes from the tensors named `boxes` [N, A, 4] and `scores` [N, A, C] to the four
    DETECTION_OUTPUTS (a list of NodeProto; every intermediate name starts with `prefix`)."""
    from onnx import helper

    p = prefix
    height, width = img_shape
    nodes = [
        _const(helper, p + "pixels", np.array([[[height, width, height, width]]], np.float32)),
        # Only the anchors where some image has a foreground score above min_score go on (U of
        # them, in anchor order, so NMS breaks score ties by anchor as numpy does): the whole
        # [N, A, C] map is read once for the max over foreground classes, and the class-major
        # copy NonMaxSuppression needs is a small one. Anchor 0 is always taken, so U is never
        # empty (zero-size tensors are not every runtime's strength); NMS drops its low scores.
        _const(helper, p + "fg_start", np.array([1], np.int64)),
        _const(helper, p + "fg_end", np.array([num_classes], np.int64)),
        _const(helper, p + "last_axis", np.array([2], np.int64)),
        helper.make_node("Slice", [scores, p + "fg_start", p + "fg_end", p + "last_axis"], [p + "fg_only"]),
        helper.make_node("ReduceMax", [p + "fg_only"], [p + "anchor_best"], axes=[0, 2], keepdims=0),  # [A]
        _const(helper, p + "min_score_s", np.array(min_score, np.float32)),
        helper.make_node("Greater", [p + "anchor_best", p + "min_score_s"], [p + "anchor_above"]),
        _const(helper, p + "is_first", np.arange(num_anchors) == 0),
        helper.make_node("Or", [p + "anchor_above", p + "is_first"], [p + "anchor_taken"]),
        helper.make_node("NonZero", [p + "anchor_taken"], [p + "taken_2d"]),  # [1, U]
        _const(helper, p + "flat", np.array([-1], np.int64)),
        helper.make_node("Reshape", [p + "taken_2d", p + "flat"], [p + "taken"]),  # [U]
        helper.make_node("Gather", [scores, p + "taken"], [p + "sub_scores"], axis=1),  # [N,U,C]
        helper.make_node("Gather", [boxes, p + "taken"], [p + "sub_boxes"], axis=1),  # [N, U, 4]
        helper.make_node("Mul", [p + "sub_boxes", p + "pixels"], [p + "boxes_px"]),  # y1x1y2x2 px
        helper.make_node("Transpose", [p + "sub_scores"], [p + "scores_t"], perm=[0, 2, 1]),
        _const(helper, p + "class_axis", np.array([1], np.int64)),
        helper.make_node(
            "Slice", [p + "scores_t", p + "fg_start", p + "fg_end", p + "class_axis"], [p + "cand"]
        ),  # [N, C-1, U]
        _const(helper, p + "not_candidate", np.array(NOT_A_CANDIDATE, np.float32)),
        _const(helper, p + "max_boxes", np.array([max_boxes], np.int64)),
        _const(helper, p + "iou", np.array([nms_threshold], np.float32)),
        # NonMaxSuppression keeps scores > score_threshold, strictly (ONNX Runtime and OpenVINO:
        # tests/test_detections_graph.py), as the numpy post-processing does.
        _const(helper, p + "score_thr", np.array([min_score], np.float32)),
        # selected [K, 3]: (image, class - 1, anchor), by image, class, then descending score.
        helper.make_node(
            "NonMaxSuppression",
            [p + "boxes_px", p + "cand", p + "max_boxes", p + "iou", p + "score_thr"],
            [p + "selected"],
            center_point_box=0,
        ),
    ]
    nodes += _gather_selected(helper, p)
    nodes += _best_per_image(helper, p, batch_size, max_detections)
    return nodes


def _gather_selected(helper, p):
    """Score, box (input pixels) and class index of each selected row."""
    return [
        helper.make_node("GatherND", [p + "cand", p + "selected"], [p + "sel_scores"]),  # [K]
        _const(helper, p + "col_image", np.array(0, np.int64)),
        _const(helper, p + "col_class", np.array(1, np.int64)),
        _const(helper, p + "cols_box", np.array([0, 2], np.int64)),
        helper.make_node("Gather", [p + "selected", p + "col_image"], [p + "sel_image"], axis=1),
        helper.make_node("Gather", [p + "selected", p + "col_class"], [p + "sel_fg"], axis=1),
        helper.make_node("Gather", [p + "selected", p + "cols_box"], [p + "sel_box_at"], axis=1),
        helper.make_node("GatherND", [p + "boxes_px", p + "sel_box_at"], [p + "sel_boxes"]),
        _const(helper, p + "one", np.array(1, np.int64)),
        helper.make_node("Add", [p + "sel_fg", p + "one"], [p + "sel_classes"]),  # class index
    ]


def _best_per_image(helper, p, batch_size, max_detections):
    """The max_detections best selected rows of each image, padded (the four outputs).

    A [N, K] matrix holds each selected score in its image's row (-1 elsewhere); D columns of -1
    appended keep TopK's k = D valid however few rows were selected (K may be 0). TopK's indices
    then address the selected rows followed by D padding rows."""
    d = max_detections
    return [
        _const(helper, p + "images", np.arange(batch_size, dtype=np.int64)[:, None]),  # [N, 1]
        _const(helper, p + "axis0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", [p + "sel_image", p + "axis0"], [p + "sel_image_row"]),
        helper.make_node("Equal", [p + "sel_image_row", p + "images"], [p + "own"]),  # [N, K]
        helper.make_node("Unsqueeze", [p + "sel_scores", p + "axis0"], [p + "sel_scores_row"]),
        helper.make_node("Where", [p + "own", p + "sel_scores_row", p + "not_candidate"], [p + "per_image"]),
        _const(helper, p + "pad_scores", np.full((batch_size, d), NOT_A_CANDIDATE, np.float32)),
        helper.make_node("Concat", [p + "per_image", p + "pad_scores"], [p + "per_image_pad"], axis=1),
        _const(helper, p + "k", np.array([d], np.int64)),
        helper.make_node(
            "TopK",
            [p + "per_image_pad", p + "k"],
            [p + "top_scores", p + "top_at"],
            axis=1,
            largest=1,
            sorted=1,
        ),  # [N, D]
        helper.make_node("Greater", [p + "top_scores", p + "not_candidate"], [p + "valid"]),
        # boxes
        _const(helper, p + "pad_boxes", np.zeros((d, 4), np.float32)),
        helper.make_node("Concat", [p + "sel_boxes", p + "pad_boxes"], [p + "boxes_pad"], axis=0),
        helper.make_node("Gather", [p + "boxes_pad", p + "top_at"], [p + "top_boxes"], axis=0),
        _const(helper, p + "xyxy", np.array([1, 0, 3, 2], np.int64)),
        helper.make_node("Gather", [p + "top_boxes", p + "xyxy"], [p + "top_boxes_xy"], axis=2),
        _const(helper, p + "axis2", np.array([2], np.int64)),
        helper.make_node("Unsqueeze", [p + "valid", p + "axis2"], [p + "valid_box"]),
        _const(helper, p + "zero_f", np.array(0, np.float32)),
        helper.make_node(
            "Where", [p + "valid_box", p + "top_boxes_xy", p + "zero_f"], [DETECTION_OUTPUTS[0]]
        ),
        # scores
        helper.make_node("Where", [p + "valid", p + "top_scores", p + "zero_f"], [DETECTION_OUTPUTS[1]]),
        # classes
        _const(helper, p + "pad_classes", np.zeros(d, np.int64)),
        helper.make_node("Concat", [p + "sel_classes", p + "pad_classes"], [p + "classes_pad"], axis=0),
        helper.make_node("Gather", [p + "classes_pad", p + "top_at"], [p + "top_classes"], axis=0),
        _const(helper, p + "zero_i", np.array(0, np.int64)),
        helper.make_node("Where", [p + "valid", p + "top_classes", p + "zero_i"], [DETECTION_OUTPUTS[2]]),
        # count
        helper.make_node("Cast", [p + "valid"], [p + "valid_i"], to=7),  # int64
        _const(helper, p + "axis1", np.array([1], np.int64)),
        helper.make_node("ReduceSum", [p + "valid_i", p + "axis1"], [DETECTION_OUTPUTS[3]], keepdims=0),
    ]


def output_infos(batch_size, max_detections):
    """ValueInfoProtos of the four outputs."""
    from onnx import TensorProto, helper

    n, d = batch_size, max_detections
    return [
        helper.make_tensor_value_info(DETECTION_OUTPUTS[0], TensorProto.FLOAT, [n, d, 4]),
        helper.make_tensor_value_info(DETECTION_OUTPUTS[1], TensorProto.FLOAT, [n, d]),
        helper.make_tensor_value_info(DETECTION_OUTPUTS[2], TensorProto.INT64, [n, d]),
        helper.make_tensor_value_info(DETECTION_OUTPUTS[3], TensorProto.INT64, [n]),
    ]


def detections_model(batch_size, num_anchors, num_classes, img_shape, **params):
    """A model of the post-processing alone: inputs `boxes` [N, A, 4], `scores` [N, A, C] ->
    the four outputs (for checking the graph on hand-built boxes and scores)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch_size, num_anchors, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch_size, num_anchors, num_classes]),
    ]
    nodes = detection_nodes("boxes", "scores", batch_size, num_anchors, num_classes, img_shape, **params)
    graph = helper.make_graph(
        nodes, "nasfpn_postprocess", inputs, output_infos(batch_size, params.get("max_detections", 100))
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _static_dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


def check_raw_outputs(model, path):
    """(batch, anchors, classes) of a raw export: outputs boxes [N, A, 4] and scores [N, A, C];
    DetectionsGraphError naming `path` otherwise (a detections graph, another network)."""
    outputs = list(model.graph.output)
    if is_detections_signature([o.name for o in outputs]):
        raise DetectionsGraphError(
            f"{path} is a detections graph (its outputs are final "
            "detections): expected the raw export (boxes, scores); export "
            "again without --export_detections"
        )
    shapes = [_static_dims(o) for o in outputs]
    if (
        len(shapes) != RAW_OUTPUTS
        or len(shapes[0]) != 3
        or shapes[0][2] != 4
        or len(shapes[1]) != 3
        or shapes[1][:2] != shapes[0][:2]
        or shapes[1][2] < 2
    ):
        raise DetectionsGraphError(
            f"{path}: expected this project's raw outputs boxes [N, A, 4] "
            f"and scores [N, A, C], got outputs {shapes}"
        )
    return tuple(shapes[1])


def graph_options(min_score, nms_threshold, max_boxes, max_detections):
    """What a detections graph's model description records about its post-processing."""
    return {
        "min_score": float(min_score),
        "nms_threshold": float(nms_threshold),
        "max_boxes": int(max_boxes),
        "max_detections": int(max_detections),
        "box_order": BOX_ORDER,
    }


BOX_ORDER = "x1y1x2y2 pixels of the network input"


def append_detection_nodes(
    path, img_shape, min_score, nms_threshold, max_boxes, max_detections, description=None
):
    """Rewrite the raw ONNX export at `path` as a detections graph (in place, via a temporary
    file renamed over it) and return `path`. `description` (nasfpn/model_files/description.py), when
    given, is stored with `detections_graph` set to the post-processing the graph now holds."""
    import dataclasses
    import onnx
    from nasfpn.core.atomic import atomic_path
    from nasfpn.model_files.description import METADATA_KEY

    model = onnx.load(path)
    batch_size, num_anchors, num_classes = check_raw_outputs(model, path)
    boxes, scores = (o.name for o in model.graph.output)
    model.graph.node.extend(
        detection_nodes(
            boxes,
            scores,
            batch_size,
            num_anchors,
            num_classes,
            img_shape,
            min_score,
            nms_threshold,
            max_boxes,
            max_detections,
        )
    )
    del model.graph.output[:]
    model.graph.output.extend(output_infos(batch_size, max_detections))
    onnx.checker.check_model(model)
    if description is not None:
        described = dataclasses.replace(
            description, detections_graph=graph_options(min_score, nms_threshold, max_boxes, max_detections)
        )
        kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        model.metadata_props.add(key=METADATA_KEY, value=described.to_json())
    with atomic_path(path) as tmp:
        onnx.save(model, tmp)
    return path


def check_raw_model_file(path, needed_by):
    """DetectionsGraphError unless the ONNX file at `path` has the raw outputs (boxes, scores):
    `needed_by` works on them."""
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # pylint: disable=broad-except  (onnx's DecodeError and friends)
        raise DetectionsGraphError(f"{path}: not an ONNX model ({exc.__class__.__name__})") from None
    try:
        check_raw_outputs(model, path)
    except DetectionsGraphError as exc:
        raise DetectionsGraphError(f"{needed_by}: {exc}") from None
