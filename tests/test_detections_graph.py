"""The ONNX detections graph (nasfpn/deploy/detections_graph.py) against the numpy post-processing
(nasfpn/inference/detections.py:detections_of_image), in ONNX Runtime and OpenVINO.

The post-processing graph alone (inputs boxes and scores) runs on hand-built images, one per case,
in one batch: score ties and scores at min_score, a class with more candidates than max_boxes plus
the per-image cap, an image with no candidate, and two small boxes whose IoU crosses the NMS
threshold only with the release's "+1" pixel areas (the one expected difference). Boxes are
normalised to a 128 x 128 input and evaluated at that size, so both sides multiply float32 values
by 128 (exact) and boxes and scores are compared exactly. Then export.py --export_detections on
the TINY network, and eval.py on it against the raw ONNX."""

import json
import os

import numpy as np
import pytest

from nasfpn.ops.boxes import box_iou
from nasfpn.inference.detections import DETECTION_OUTPUTS, detections_from_graph, detections_of_image
from tests.conftest import TINY, make_config
from tests.helpers.modes import switch_mode
from tests.helpers.random_heads import SPREAD_PRIOR, spread_heads
from tests.test_eval_exported import write_pseudo_ground_truth

SIDE = 128
NUM_ANCHORS = 160
NUM_CLASSES = 4  # background + 3
MAX_BOXES = 100
MAX_DETECTIONS = 120
PARAMS = dict(min_score=0.1, nms_threshold=0.6, max_boxes=MAX_BOXES, max_detections=MAX_DETECTIONS)
TIES, CROWDED, EMPTY, PLUS_ONE, AT_THRESHOLD = range(5)


def pixel_box(y1, x1, y2, x2):
    return np.array([y1, x1, y2, x2], np.float32) / SIDE


def grid_boxes():
    """160 disjoint 6 x 6 pixel boxes, 8 pixels apart (a gap of 2: no overlap, "+1" or not)."""
    cells = [(8 * (i // 16), 8 * (i % 16)) for i in range(NUM_ANCHORS)]
    return np.stack([pixel_box(y, x, y + 6, x + 6) for y, x in cells])


def hand_built_batch():
    boxes = np.tile(grid_boxes(), (5, 1, 1))
    scores = np.zeros((5, NUM_ANCHORS, NUM_CLASSES), np.float32)
    rng = np.random.default_rng(3)
    # TIES: class 1, anchors 3..6 one box with one score (the lowest anchor survives); class 2,
    # anchors 10 and 11 overlap (IoU 0.9) with equal scores (10 survives), 12 and 13 are disjoint
    # ties (both kept); class 3, scores exactly at min_score (dropped: "> min_score").
    boxes[TIES, 3:7] = pixel_box(40, 40, 80, 80)
    scores[TIES, 3:7, 1] = 0.7
    boxes[TIES, 10], boxes[TIES, 11] = pixel_box(0, 0, 50, 50), pixel_box(0, 0, 50, 45)
    scores[TIES, 10:14, 2] = 0.5
    scores[TIES, 20:25, 3] = np.float32(0.1)
    # CROWDED: class 3 has 150 candidates (max_boxes keeps 100), class 1 has 40: 140 detections
    # for max_detections 120. All scores distinct, so the cut is not a tie.
    distinct = rng.permutation(np.linspace(0.11, 0.99, 190).astype(np.float32))
    scores[CROWDED, :150, 3] = distinct[:150]
    scores[CROWDED, 100:140, 1] = distinct[150:]
    # EMPTY: nothing above min_score.
    scores[EMPTY, :, 1:] = rng.uniform(0, 0.1, (NUM_ANCHORS, NUM_CLASSES - 1)).astype(np.float32)
    # PLUS_ONE: two 4-pixel boxes, the second shifted by 1.2 pixels.
    boxes[PLUS_ONE, 0], boxes[PLUS_ONE, 1] = pixel_box(10, 10, 14, 14), pixel_box(10, 11.2, 14, 15.2)
    scores[PLUS_ONE, 0:2, 1] = (0.9, 0.8)
    # AT_THRESHOLD: IoU exactly 0.6 (areas 100 and 60, the second inside the first).
    boxes[AT_THRESHOLD, 0], boxes[AT_THRESHOLD, 1] = pixel_box(0, 0, 10, 10), pixel_box(0, 0, 10, 6)
    scores[AT_THRESHOLD, 0:2, 2] = (0.9, 0.8)
    return boxes, scores


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    import onnx
    from nasfpn.deploy.detections_graph import detections_model

    path = str(tmp_path_factory.mktemp("detgraph") / "postprocess.onnx")
    onnx.save(detections_model(5, NUM_ANCHORS, NUM_CLASSES, (SIDE, SIDE), **PARAMS), path)
    return path


def run_onnxruntime(path, boxes, scores):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(DETECTION_OUTPUTS)
    return session.run(None, {"boxes": boxes, "scores": scores})


def run_openvino(path, boxes, scores):
    import openvino as ov

    # f32 set explicitly: OpenVINO's CPU default is bf16 on CPUs that have it.
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({"boxes": boxes, "scores": scores})
    return [result[compiled.output(name)] for name in DETECTION_OUTPUTS]


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def graph_outputs(request, graph_file):
    boxes, scores = hand_built_batch()
    run = run_onnxruntime if request.param == "onnxruntime" else run_openvino
    return request.param, run(graph_file, boxes, scores)


def graph_image(outputs, image):
    return detections_from_graph(*[o[image] for o in outputs], (SIDE, SIDE), (SIDE, SIDE))


def numpy_image(image, **overrides):
    boxes, scores = hand_built_batch()
    params = {k: v for k, v in PARAMS.items() if k != "max_detections"}
    return detections_of_image(boxes[image], scores[image], (SIDE, SIDE), **{**params, **overrides})


def rows(kept):
    """Detections as a set-like sorted list of (class, score, box) rows."""
    boxes, scores, classes = kept
    return sorted((int(c), float(s), tuple(np.round(b, 4))) for b, s, c in zip(boxes, scores, classes))


def test_outputs_have_the_documented_shapes_and_padding(graph_outputs):
    runtime, (boxes, scores, classes, counts) = graph_outputs
    assert boxes.shape == (5, MAX_DETECTIONS, 4) and boxes.dtype == np.float32
    assert scores.shape == classes.shape == (5, MAX_DETECTIONS) and classes.dtype == np.int64
    assert counts.dtype == np.int64
    at_threshold = 2 if runtime == "onnxruntime" else 1  # test_iou_exactly_at_the_threshold
    assert counts.tolist() == [1 + 3, MAX_DETECTIONS, 0, 2, at_threshold]
    for image, count in enumerate(counts):
        assert (np.diff(scores[image, :count]) <= 0).all()  # best first
        assert not boxes[image, count:].any() and not scores[image, count:].any()
        assert not classes[image, count:].any()  # padding: class 0 (background)
        assert set(classes[image, :count]) <= {1, 2, 3}


def greedy_reference(boxes, scores, plus_one, min_score=0.1, nms_threshold=0.6, max_boxes=MAX_BOXES):
    """The post-processing as the plain sequential loop: per class, candidates > min_score by
    descending score (ties: lower anchor), each kept unless its IoU with a kept box of the class
    is > nms_threshold, at most max_boxes; boxes x1y1x2y2 in pixels of the 128 x 128 input."""
    found = []
    pixels = boxes.astype(np.float64)[:, [1, 0, 3, 2]] * SIDE
    for cls in range(1, scores.shape[1]):
        order = sorted(np.flatnonzero(scores[:, cls] > min_score), key=lambda a: (-scores[a, cls], a))
        kept = []
        for anchor in order:
            if len(kept) == max_boxes:
                break
            if all(box_iou(pixels[[k]], pixels[[anchor]], plus_one)[0, 0] <= nms_threshold for k in kept):
                kept.append(anchor)
        found += [(pixels[a], scores[a, cls], cls) for a in kept]
    return (
        np.array([f[0] for f in found]).reshape(-1, 4),
        np.array([f[1] for f in found]),
        np.array([f[2] for f in found], np.int64),
    )


def test_ties_and_scores_at_min_score_as_numpy(graph_outputs):
    _, outputs = graph_outputs
    got, expected = graph_image(outputs, TIES), numpy_image(TIES)
    assert rows(got) == rows(expected)
    # the ties that survive: anchor 3 of class 1, anchors 10 (before 11), 12, 13 of class 2
    assert [tuple(b) for b in got[0][got[2] == 1]] == [(40, 40, 80, 80)]
    assert sorted(tuple(b) for b in got[0][got[2] == 2]) == [
        (0, 0, 50, 50),
        (96, 0, 102, 6),
        (104, 0, 110, 6),
    ]


def test_max_boxes_per_class_and_the_per_image_cap(graph_outputs):
    _, outputs = graph_outputs
    got = graph_image(outputs, CROWDED)
    expected = numpy_image(CROWDED)
    assert np.bincount(expected[2], minlength=4).tolist() == [0, 40, 0, MAX_BOXES]
    # the graph keeps the max_detections best of numpy's 140 (no per-image cap there)
    best = np.argsort(-expected[1], kind="stable")[:MAX_DETECTIONS]
    assert rows(got) == rows(tuple(e[best] for e in expected))


def test_an_image_without_candidates(graph_outputs):
    _, outputs = graph_outputs
    got = graph_image(outputs, EMPTY)
    assert len(numpy_image(EMPTY)[1]) == 0
    assert got[0].shape == (0, 4) and len(got[1]) == len(got[2]) == 0


def test_a_batch_without_any_candidate(graph_file, graph_outputs):
    """No anchor of any image above min_score: the graph still runs (anchor 0 alone goes to NMS)
    and returns only padding."""
    runtime, _ = graph_outputs
    boxes, scores = hand_built_batch()
    scores = np.minimum(scores, np.float32(0.1))
    run = run_onnxruntime if runtime == "onnxruntime" else run_openvino
    found_boxes, found_scores, classes, counts = run(graph_file, boxes, scores)
    assert counts.tolist() == [0] * 5
    assert not found_boxes.any() and not found_scores.any() and not classes.any()


def test_plus_one_convention_is_the_expected_difference(graph_outputs):
    """The 4 x 4 boxes 1.2 px apart: IoU 2.8 * 4 / (32 - 11.2) = 0.538 with continuous areas
    (ONNX NMS: both kept), 3.8 * 5 / (50 - 19) = 0.613 with "+1" sides (numpy: the second is
    suppressed). Each side equals the sequential reference with its own convention."""
    boxes, scores = hand_built_batch()
    pair = boxes[PLUS_ONE, :2] * SIDE
    assert box_iou(pair[:1], pair[1:])[0, 0] == pytest.approx(11.2 / 20.8, abs=1e-5)
    assert box_iou(pair[:1], pair[1:], plus_one=True)[0, 0] == pytest.approx(19 / 31, abs=1e-5)
    _, outputs = graph_outputs
    got, expected = graph_image(outputs, PLUS_ONE), numpy_image(PLUS_ONE)
    assert len(expected[1]) == 1 and len(got[1]) == 2
    assert rows(expected) == rows(greedy_reference(boxes[PLUS_ONE], scores[PLUS_ONE], True))
    assert rows(got) == rows(greedy_reference(boxes[PLUS_ONE], scores[PLUS_ONE], False))


def test_hand_built_images_equal_the_sequential_loop_without_plus_one(graph_outputs):
    _, outputs = graph_outputs
    boxes, scores = hand_built_batch()
    for image in (TIES, EMPTY, PLUS_ONE):
        assert rows(graph_image(outputs, image)) == rows(greedy_reference(boxes[image], scores[image], False))


def test_iou_exactly_at_the_threshold(graph_outputs):
    """Areas 100 and 60, the second inside the first: IoU 0.6 exactly in float32, the threshold.
    ONNX Runtime suppresses only above it (numpy's rule: both kept); OpenVINO's
    NonMaxSuppression suppresses at equality (docs/deployment.md states it). numpy suppresses
    for another reason: with "+1" sides the IoU is 61 * 101 / 101^2 = 0.604."""
    runtime, outputs = graph_outputs
    boxes, scores = hand_built_batch()
    got, expected = graph_image(outputs, AT_THRESHOLD), numpy_image(AT_THRESHOLD)
    pair = boxes[AT_THRESHOLD, :2] * SIDE
    assert box_iou(pair[:1], pair[1:])[0, 0] == np.float32(0.6)
    assert len(expected[1]) == 1
    assert len(got[1]) == (2 if runtime == "onnxruntime" else 1)
    assert rows(expected)[0] in rows(got)


# ---- export.py --export_detections on the TINY network, eval.py on it ------------------------

E2E_ARGS = (*TINY, "--num_classes=4", *SPREAD_PRIOR)
E2E_IMAGES = 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory, request):
    """An eval MindRecord of the embedded set, a spread-head TINY checkpoint, its raw ONNX export
    and export.py's detections graph of it (both batch 2)."""
    import mindspore as ms
    import create_data
    import export as export_script
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.deploy.export import export_network
    from nasfpn.inference.build import build_inference_network

    work = tmp_path_factory.mktemp("detgraph_e2e")
    root = generate_embedded_dataset(str(work / "shapes"), num_train=1, num_val=E2E_IMAGES, size=144, seed=8)
    create_data.main(
        [
            *E2E_ARGS,
            "--create_dataset=coco",
            f"--coco_root={root}",
            "--is_training=false",
            f"--mindrecord_dir={work / 'mr'}",
            "--num_shards=1",
        ]
    )
    switch_mode(request, ms.GRAPH_MODE)
    ms.set_seed(2)
    net = spread_heads(build_inference_network(make_config(*E2E_ARGS)))
    ckpt = save_checkpoint_atomic(net, str(work / "tiny.ckpt"))
    raw = export_network(net, str(work / "raw"), "ONNX", 2, (SIDE, SIDE))
    graph = export_script.main(
        [
            *E2E_ARGS,
            f"--checkpoint_path={ckpt}",
            "--file_format=ONNX",
            f"--file_name={work / 'det'}",
            "--export_batch_size=2",
            "--export_detections=True",
            "--export_max_detections=300",
        ]
    )
    return {"work": work, "root": root, "mr": str(work / "mr"), "raw": raw, "graph": graph, "ckpt": ckpt}


@pytest.mark.slow
def test_export_writes_a_described_detections_graph(exported):
    import onnxruntime as ort
    from nasfpn.model_files.description import read_description

    session = ort.InferenceSession(exported["graph"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(DETECTION_OUTPUTS)
    assert [o.shape for o in session.get_outputs()] == [[2, 300, 4], [2, 300], [2, 300], [2]]
    graph = read_description(exported["graph"]).detections_graph
    assert graph == {
        "min_score": 0.1,
        "nms_threshold": 0.6,
        "max_boxes": 100,
        "max_detections": 300,
        "box_order": "x1y1x2y2 pixels of the network input",
    }
    assert read_description(exported["raw"]) is None  # export_network without a description


def evaluate(exported, model, name, anno_path):
    import eval as eval_script

    out = exported["work"] / f"eval_{name}"
    eval_script.main(
        [
            *E2E_ARGS,
            f"--model_path={model}",
            f"--mindrecord_dir={exported['mr']}",
            f"--coco_root={exported['root']}",
            f"--anno_path={anno_path}",
            f"--eval_output_dir={out}",
            "--report_images=0",
        ]
    )
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    with open(out / "predictions.json") as f:
        return metrics, json.load(f)


# The budget for a deployment form of the model: at most 1 point of mAP@[.5:.95].
MAP_BUDGET = 0.01


@pytest.mark.slow
def test_eval_of_the_detections_graph_is_the_raw_models_within_the_plus_one_difference(exported):
    """eval.py on the raw ONNX and on the detections graph, against a pseudo ground truth (the
    raw model's top 4 detections of each image: a random network finds no real shape) scored by
    eval.py's pycocotools call. export_max_detections=300 = 3 classes x max_boxes leaves out the
    per-image cap, so "+1" is the only difference in the post-processing."""
    from nasfpn.evaluation.coco_metrics import coco_evaluate

    anno = os.path.join(exported["root"], "annotations", "instances_val2017.json")
    _, raw_predictions = evaluate(exported, exported["raw"], "raw", anno)
    pseudo = write_pseudo_ground_truth(anno, raw_predictions, exported["work"] / "pseudo.json")
    with open(pseudo) as f:
        image_ids = [image["id"] for image in json.load(f)["images"]]
    raw, _ = coco_evaluate(pseudo, raw_predictions, image_ids)
    graph, graph_predictions = evaluate(exported, exported["graph"], "graph", pseudo)
    assert raw["AP50"] > 0.3 and graph["num_images"] == E2E_IMAGES  # something to lose
    assert graph["min_score"] == 0.1 and graph["max_boxes"] == 100  # the graph's own values
    assert abs(graph["AP"] - raw["AP"]) <= MAP_BUDGET
    assert graph_predictions  # and they differ ("+1" decides some of these small boxes):
    assert {tuple(p["bbox"]) for p in graph_predictions} != {tuple(p["bbox"]) for p in raw_predictions}


def infer(exported, model, name):
    import infer as infer_script

    out = exported["work"] / f"infer_{name}"
    infer_script.main(
        [
            *E2E_ARGS,
            f"--model_path={model}",
            f"--image={exported['root']}/val2017",
            f"--output_dir={out}",
            "--score_threshold=0.5",
            f"--anno_path={exported['root']}/annotations/instances_val2017.json",
        ]
    )
    with open(out / "detections.json") as f:
        return sorted(json.load(f), key=lambda d: (d["file_name"], d["category_id"], -d["score"]))


def best_per_class(detections):
    best = {}
    for d in detections:  # sorted by file, class, descending score
        best.setdefault((d["file_name"], d["category_id"]), d)
    return best


@pytest.mark.slow
def test_infer_takes_the_detections_graph(exported):
    """infer.py's detections.json from the graph against the raw model's. The best box of each
    class of an image is kept whatever the IoU convention (greedy NMS keeps its first
    candidate), so those must be equal, rescaled from the 128 x 128 input to each 144 x 144
    image (bbox within 0.011 px and scores within 1.1e-5: one step of the rounding both are
    written with, 0.01 px and 1e-5, when nearly equal values round apart). The others differ where "+1" decides (this network's boxes are 6-20 px wide)."""
    raw, graph = infer(exported, exported["raw"], "raw"), infer(exported, exported["graph"], "graph")
    raw_best, graph_best = best_per_class(raw), best_per_class(graph)
    assert graph_best.keys() == raw_best.keys()
    assert len({file_name for file_name, _ in graph_best}) == E2E_IMAGES
    for key, ref in raw_best.items():
        got = graph_best[key]
        assert got["score"] == pytest.approx(ref["score"], abs=1.1e-5)
        assert got["bbox"] == pytest.approx(ref["bbox"], abs=0.011)


# ---- a detections graph where the raw outputs are needed, and the reverse ---------------------


def test_quantization_refuses_a_detections_graph(graph_file, tmp_path):
    from nasfpn.deploy.detections_graph import DetectionsGraphError
    from nasfpn.deploy.quantize import quantize_onnx_int8

    with pytest.raises(
        DetectionsGraphError,
        match=rf"^INT8 quantization: {graph_file} is a "
        r"detections graph .*expected the raw export \(boxes, scores\); export "
        "again without --export_detections$",
    ):
        quantize_onnx_int8(graph_file, str(tmp_path / "q.onnx"), [])
    assert not os.listdir(tmp_path)


def test_appending_needs_this_projects_raw_outputs(graph_file, tmp_path):
    """The post-processing goes after boxes [N, A, 4] and scores [N, A, C] only: a detections
    graph, or another network's ONNX (here one with a single output), is refused by name."""
    import onnx
    from onnx import TensorProto, helper
    from nasfpn.deploy.detections_graph import DetectionsGraphError, append_detection_nodes

    with pytest.raises(DetectionsGraphError, match=rf"^{graph_file} is a detections graph"):
        append_detection_nodes(graph_file, (SIDE, SIDE), 0.1, 0.6, 100, 100)
    other = str(tmp_path / "other.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    onnx.save(
        helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), other
    )
    with pytest.raises(
        DetectionsGraphError,
        match=rf"^{other}: expected this project's raw outputs "
        r"boxes \[N, A, 4\] and scores \[N, A, C\], got outputs \[\[1, 10\]\]$",
    ):
        append_detection_nodes(other, (SIDE, SIDE), 0.1, 0.6, 100, 100)


@pytest.mark.slow
def test_the_310_twin_and_tta_refuse_a_detections_graph(exported, tmp_path):
    import infer_310_twin
    from nasfpn.core.errors import UserError
    from nasfpn.inference.runtimes import ModelFileError

    with pytest.raises(
        ModelFileError,
        match=rf"^{exported['graph']} is a detections graph "
        r"\(exported with --export_detections=True: its outputs are final "
        r"detections\); the 310 twin .* needs the raw outputs \(boxes, scores\)",
    ):
        infer_310_twin.main(
            [
                *E2E_ARGS,
                f"--model_path={exported['graph']}",
                f"--dataset_path={exported['root']}/val2017",
                f"--result_path={tmp_path / 'result'}",
            ]
        )
    import infer as infer_script

    with pytest.raises(
        UserError,
        match=rf"^--tta_flip/--tta_scales: {exported['graph']} is a "
        "detections graph",
    ):
        infer_script.main(
            [
                *E2E_ARGS,
                f"--model_path={exported['graph']}",
                "--tta_flip=True",
                f"--image={exported['root']}/val2017",
                f"--output_dir={tmp_path / 'i'}",
                f"--anno_path={exported['root']}/annotations/instances_val2017.json",
            ]
        )
    assert not os.listdir(tmp_path)  # neither the result folder nor the output folder made


@pytest.mark.slow
def test_eval_refuses_post_processing_values_the_graph_does_not_apply(exported, tmp_path):
    import eval as eval_script
    from nasfpn.model_files.description import ModelDescriptionError

    with pytest.raises(
        ModelDescriptionError,
        match=rf"^--min_score=0.3 contradicts "
        rf"{exported['graph']}, a detections graph that applies min_score=0.1 "
        "inside itself; leave --min_score out, or export again with --min_score=0.3$",
    ):
        eval_script.main(
            [
                *E2E_ARGS,
                f"--model_path={exported['graph']}",
                "--min_score=0.3",
                f"--mindrecord_dir={exported['mr']}",
                f"--coco_root={exported['root']}",
                f"--eval_output_dir={tmp_path / 'e'}",
            ]
        )
    assert not (tmp_path / "e").exists()


def test_export_detections_needs_onnx(tmp_path):
    import export as export_script
    from nasfpn.deploy.export import ExportError

    with pytest.raises(
        ExportError,
        match=r"^--export_detections=True writes an ONNX detections "
        r"graph: give --file_format=ONNX \(got MINDIR\)$",
    ):
        export_script.main(
            [*E2E_ARGS, "--file_format=MINDIR", "--export_detections=True", f"--file_name={tmp_path / 'm'}"]
        )
    assert not os.listdir(tmp_path)
