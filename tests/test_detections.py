"""Post-processing of network outputs (nasfpn/inference/detections.py): NMS against greedy loops and at
exactly its 0.6 threshold, box scaling to pixels, per-image results and COCO result entries."""

import json
import os

import numpy as np
import pytest

from nasfpn.ops.boxes import box_iou
from nasfpn.evaluation.coco_metrics import coco_evaluate, format_table
from nasfpn.inference.detections import (
    BATCHED_MAX,
    _cluster_nms,
    detections_to_coco,
    detections_of_image,
    scale_boxes,
)


# Post-processing equals a straightforward per-class loop; COCO metrics on perfect detections.


def reference_postprocess(boxes, scores, image_hw, min_score=0.1, thr=0.6, max_boxes=100):
    """The release's per-class numpy NMS loop, with a stable score order for ties."""
    h, w = image_hw
    out = []
    for c in range(1, scores.shape[1]):
        mask = scores[:, c] > min_score
        if not mask.any():
            continue
        b = boxes[mask].astype(np.float64) * [h, w, h, w]
        s = scores[mask, c]
        y1, x1, y2, x2 = b.T
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = np.argsort(-s, kind="stable")
        keep = []
        while order.size > 0:
            i = order[0]
            keep.append(i)
            if len(keep) >= max_boxes:
                break
            xx1 = np.maximum(x1[i], x1[order[1:]])
            yy1 = np.maximum(y1[i], y1[order[1:]])
            xx2 = np.minimum(x2[i], x2[order[1:]])
            yy2 = np.minimum(y2[i], y2[order[1:]])
            inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
            ovr = inter / (areas[i] + areas[order[1:]] - inter)
            order = order[np.where(ovr <= thr)[0] + 1]
        for i in keep:
            out.append((c, float(s[i]), tuple(b[i][[1, 0, 3, 2]])))
    return out


def random_outputs(rng, anchors=3000, classes=6, dup=True):
    centre = rng.uniform(0, 1, (anchors, 2))
    size = rng.uniform(0.02, 0.4, (anchors, 2))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], 1), 0, 1).astype(np.float32)
    scores = rng.uniform(0, 1, (anchors, classes)).astype(np.float32) ** 3
    scores = np.round(scores, 2)  # many exact ties
    if dup:
        boxes[1::7] = boxes[0::7][: len(boxes[1::7])]  # identical boxes with tied scores
        scores[1::7] = scores[0::7][: len(scores[1::7])]
    return boxes, scores


@pytest.mark.parametrize(
    "seed, anchors, max_boxes, batched_max, block",
    [
        (0, 3000, 100, 256, 512),  # every class on the blocked path
        (1, 3000, 5, 256, 512),  # max_boxes cuts the blocked path short
        (2, 3000, 1000, 256, 64),  # many small blocks
        (3, 400, 100, 256, 7),  # every class batched (about 200 candidates each)
        (4, 400, 3, 256, 512),  # batched, then max_boxes per class
        (5, 150, 100, 79, 16),  # mixed: 3 classes batched (73-78 candidates), 2 blocked (80, 85)
    ],
)
def test_vectorised_equals_per_class_loop(seed, anchors, max_boxes, batched_max, block, monkeypatch):
    import nasfpn.inference.detections as pp

    monkeypatch.setattr(pp, "BATCHED_MAX", batched_max)
    monkeypatch.setattr(pp, "BLOCK", block)
    rng = np.random.default_rng(seed)
    boxes, scores = random_outputs(rng, anchors)
    got_boxes, got_scores, got_classes = detections_of_image(boxes, scores, (480, 640), 0.1, 0.6, max_boxes)
    ref = reference_postprocess(boxes, scores, (480, 640), 0.1, 0.6, max_boxes)
    assert len(ref) >= min(50, 5 * max_boxes)
    assert [(int(c), float(s)) for c, s in zip(got_classes, got_scores)] == [(c, s) for c, s, _ in ref]
    np.testing.assert_array_equal(got_boxes, np.array([b for _, _, b in ref]))


def test_sparse_score_map_with_many_classes(monkeypatch):
    """81 columns, a few hundred candidates spread over the classes (the batched path's shape)."""
    rng = np.random.default_rng(6)
    boxes, _ = random_outputs(rng, anchors=5000, classes=2, dup=False)
    scores = np.round(1 / (1 + np.exp(-rng.normal(-4.5, 1.0, (5000, 81)))), 3).astype(np.float32)
    got_boxes, got_scores, got_classes = detections_of_image(boxes, scores, (300, 200))
    ref = reference_postprocess(boxes, scores, (300, 200))
    assert len(set(got_classes)) > 40
    assert [(int(c), float(s)) for c, s in zip(got_classes, got_scores)] == [(c, s) for c, s, _ in ref]
    np.testing.assert_array_equal(got_boxes, np.array([b for _, _, b in ref]))


def test_nothing_above_threshold():
    boxes, scores = random_outputs(np.random.default_rng(4), anchors=50)
    out = detections_of_image(boxes, scores * 0.05, (100, 100))
    assert all(len(x) == 0 for x in out)


def test_perfect_detections_give_map_one(tmp_path):
    from nasfpn.data.embedded import generate_embedded_dataset

    root = generate_embedded_dataset(str(tmp_path / "d"), num_train=1, num_val=8, size=96, seed=5)
    anno = os.path.join(root, "annotations", "instances_val2017.json")
    with open(anno) as f:
        coco = json.load(f)
    to_cat = {1: 1, 2: 2, 3: 3}
    detections = []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        # Ground truth as network outputs: normalised y1x1y2x2 and a one-hot score row each,
        # plus background-ish anchors that post-processing must drop.
        boxes = np.array(
            [
                [
                    a["bbox"][1] / 96,
                    a["bbox"][0] / 96,
                    (a["bbox"][1] + a["bbox"][3]) / 96,
                    (a["bbox"][0] + a["bbox"][2]) / 96,
                ]
                for a in anns
            ]
            + [[0, 0, 1, 1]]
        )
        scores = np.zeros((len(boxes), 4))
        for k, a in enumerate(anns):
            scores[k, a["category_id"]] = 0.9
        scores[-1, 1] = 0.05
        detections += detections_to_coco(image["id"], *detections_of_image(boxes, scores, (96, 96)), to_cat)
    stats, text = coco_evaluate(anno, detections, [i["id"] for i in coco["images"]])
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert "Average Precision" in text
    table = format_table(stats)
    assert (
        len(table.splitlines()) == 12 and "AP @[IoU=0.50:0.95 | area=all | maxDets=100]     = 1.0000" in table
    )


# The Cluster-NMS core on its own, without a validity mask (every box real), single and batched,
# against a greedy loop written here with the "+1" pixel areas.


def greedy_keep(boxes, threshold):
    """Boxes (N, 4) x1y1x2y2 in rank order: keep a box unless a kept box above it has IoU > thr."""
    kept = []
    for j, b in enumerate(boxes):
        overlaps = False
        for i in kept:
            a = boxes[i]
            w = min(a[2], b[2]) - max(a[0], b[0]) + 1
            h = min(a[3], b[3]) - max(a[1], b[1]) + 1
            inter = max(w, 0) * max(h, 0)
            union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
            overlaps |= inter / union > threshold
        if not overlaps:
            kept.append(j)
    return np.isin(np.arange(len(boxes)), kept)


def chain(n, shift):
    """Boxes each shifted by `shift` from the previous: greedy keeps every other one for a suitable
    threshold (a suppressed box must not suppress the next), which a one-step NMS gets wrong."""
    x = np.arange(n, dtype=np.float64) * shift
    return np.stack([x, np.zeros(n), x + 99, np.full(n, 99.0)], 1)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_unmasked_single_set_equals_greedy(threshold):
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 60, (24, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 50, (24, 2))], 1)
    boxes = np.concatenate([boxes, chain(7, 10.0)])
    keep = _cluster_nms(boxes, threshold)
    assert keep.shape == (len(boxes),) and keep.dtype == bool
    np.testing.assert_array_equal(keep, greedy_keep(boxes, threshold))
    assert 0 < keep.sum() < len(boxes)


def test_unmasked_batch_of_sets_equals_greedy_per_set():
    rng = np.random.default_rng(4)
    sets = []
    for _ in range(3):
        xy = rng.uniform(0, 40, (16, 2))
        sets.append(np.concatenate([xy, xy + rng.uniform(20, 40, (16, 2))], 1))
    sets.append(chain(16, 30.0))
    batch = np.stack(sets)  # (4, 16, 4)
    keep = _cluster_nms(batch, 0.5)
    assert keep.shape == (4, 16)
    for s, k in zip(sets, keep):
        np.testing.assert_array_equal(k, greedy_keep(s, 0.5))
    assert keep[3].tolist() == [True, False] * 8


# Scaling normalised boxes to pixels (float64, x/y order) and the "+1" pixel IoU of boxes that do
# not overlap, by hand.


def pairwise_iou_plus1(a, b):
    return box_iou(a, b, plus_one=True)


def test_scale_boxes_is_float64_in_xy_order():
    boxes = np.array([[0.1, 0.2, 0.7, 0.9]], np.float32)  # y1, x1, y2, x2
    out = scale_boxes(boxes, 480, 640)
    assert out.dtype == np.float64
    expected = boxes.astype(np.float64)[:, [1, 0, 3, 2]] * np.array([640.0, 480.0, 640.0, 480.0])
    assert out.tobytes() == expected.tobytes()  # float32 arithmetic would round differently
    assert out[0, 1] != np.float32(0.1) * np.float32(480)


def test_boxes_apart_in_one_direction_have_zero_iou():
    a = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 4.0]])
    apart_in_x = np.array([[6.0, 0.0, 6.0, 0.0], [9.0, 0.0, 13.0, 4.0]])
    apart_in_y = np.array([[0.0, 6.0, 0.0, 6.0], [0.0, 9.0, 4.0, 13.0]])
    np.testing.assert_array_equal(pairwise_iou_plus1(a, apart_in_x), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(pairwise_iou_plus1(a, apart_in_y), [[0, 0], [0, 0]])
    # touching pixels overlap under the +1 convention: 5x5 boxes sharing one column
    touching = pairwise_iou_plus1(np.array([[0.0, 0, 4, 4]]), np.array([[4.0, 0, 8, 4]]))
    np.testing.assert_allclose(touching, [[5 / 45]])
    # one-pixel detections side by side in a row or a column both survive NMS
    row = np.array([[0.0, 0, 0, 0], [2.0, 0, 2, 0], [0.0, 2, 0, 2]])
    assert _cluster_nms(row, 0.5).tolist() == [True, True, True]


# detections_of_image's output types, its default of 100 boxes per class, and a class of exactly
# BATCHED_MAX candidates (the edge between the batched and the blocked path) against greedy NMS.


def test_empty_result_has_the_usual_shapes_and_types():
    boxes, scores, classes = detections_of_image(
        np.zeros((5, 4), np.float32), np.zeros((5, 3), np.float32), (10, 10)
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)
    assert (boxes.dtype, scores.dtype, classes.dtype) == (np.float64, np.float32, np.int64)


def grid_boxes(n):
    """n small normalised boxes on a grid, none overlapping."""
    side = int(np.ceil(np.sqrt(n)))
    y, x = np.divmod(np.arange(n), side)
    return np.stack([y / side, x / side, (y + 0.5) / side, (x + 0.5) / side], 1).astype(np.float32)


def test_default_keeps_at_most_100_per_class_best_first():
    n = 150
    scores = np.zeros((n, 2), np.float32)
    scores[:, 1] = np.linspace(0.2, 0.9, n, dtype=np.float32)
    boxes, kept_scores, classes = detections_of_image(grid_boxes(n), scores, (300, 300))
    assert len(boxes) == 100 and classes.dtype == np.int64 and set(classes.tolist()) == {1}
    np.testing.assert_array_equal(kept_scores, np.sort(scores[:, 1])[::-1][:100])


def test_a_class_of_exactly_batched_max_candidates_equals_greedy():
    rng = np.random.default_rng(6)
    n = BATCHED_MAX
    y1, x1 = rng.uniform(0, 0.8, (2, n))
    size = rng.uniform(0.05, 0.2, (2, n))
    boxes = np.stack([y1, x1, y1 + size[0], x1 + size[1]], 1).astype(np.float32)
    scores = np.zeros((n, 2), np.float32)
    scores[:, 1] = rng.permutation(np.linspace(0.15, 0.95, n)).astype(np.float32)
    out_boxes, out_scores, _ = detections_of_image(boxes, scores, (200, 200), max_boxes=n)
    order = np.argsort(-scores[:, 1], kind="stable")
    pixel = scale_boxes(boxes[order], 200, 200)
    keep = greedy_keep(pixel, 0.6)
    assert 0 < keep.sum() < n
    np.testing.assert_array_equal(out_boxes, pixel[keep])
    np.testing.assert_array_equal(out_scores, scores[order, 1][keep])


# COCO result entries from detections: field types and the rounding of bbox (2 decimals, x/y/w/h)
# and score (5 decimals), checked against values written out by hand.


def test_entries_round_bbox_to_two_and_score_to_five_decimals():
    boxes = np.array([[10.1234, 20.9876, 30.5678, 44.4321], [0.0, 1.005001, 2.5, 3.0]], np.float64)
    scores = np.array([0.123456789, 0.9], np.float32)
    classes = np.array([1, 3], np.int64)
    entries = detections_to_coco(np.int64(7), boxes, scores, classes, {1: 18, 3: 90})
    assert entries == [
        {"image_id": 7, "category_id": 18, "bbox": [10.12, 20.99, 20.44, 23.44], "score": 0.12346},
        {"image_id": 7, "category_id": 90, "bbox": [0.0, 1.01, 2.5, 1.99], "score": 0.9},
    ]
    first = entries[0]
    assert type(first["image_id"]) is int and type(first["category_id"]) is int
    assert all(type(v) is float for v in first["bbox"]) and type(first["score"]) is float
    json.dumps(entries)  # plain Python types only


def test_no_detections_give_no_entries():
    assert detections_to_coco(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), {}) == []


# Cases built by hand to sit exactly on the NMS threshold (IoU > 0.6 suppresses, "+1" pixel
# areas). Each case first checks, in the test itself, that its IoU really equals the threshold in
# the arithmetic the contract names, so a strict ">" and a ">=" give different answers.

NMS_THRESHOLD = 0.6


# ---- NMS: IoU > 0.6 suppresses, areas with "+1" ---------------------------------------------------
def iou_plus1(a, b, dtype):
    """IoU of two (x1, y1, x2, y2) pixel boxes, w = x2 - x1 + 1, in the given float type."""
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    one = dtype(1)
    w = max(dtype(0), min(a[2], b[2]) - max(a[0], b[0]) + one)
    h = max(dtype(0), min(a[3], b[3]) - max(a[1], b[1]) + one)
    area = lambda r: (r[2] - r[0] + one) * (r[3] - r[1] + one)  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


# A 10x10 "+1" box and the same box shifted 2.5 px right: intersection 7.5 x 10 = 75, union 125,
# IoU 3/5 exactly (every number is a short binary fraction, so float32 and float64 agree).
IMAGE = 32  # pixels; a power of two keeps the normalised coordinates exact
TOP_BOX = (0.0, 0.0, 9.0, 9.0)
AT_THRESHOLD = (2.5, 0.0, 11.5, 9.0)
JUST_ABOVE = (2.5 - 1 / 64, 0.0, 11.5 - 1 / 64, 9.0)  # IoU 0.602


def _network_outputs(pixel_boxes_xyxy, scores, image_size, num_classes=2):
    """Normalised (y1, x1, y2, x2) boxes and an (A, C) score map with every box in class 1."""
    px = np.asarray(pixel_boxes_xyxy, np.float32)
    boxes = px[:, [1, 0, 3, 2]] / np.float32(image_size)
    score_map = np.zeros((len(px), num_classes), np.float32)
    score_map[:, 1] = scores
    return boxes, score_map


def test_the_nms_cases_are_on_and_above_the_boundary():
    for dtype in (np.float32, np.float64):
        assert iou_plus1(TOP_BOX, AT_THRESHOLD, dtype) == dtype(NMS_THRESHOLD)
        assert dtype(NMS_THRESHOLD) < iou_plus1(TOP_BOX, JUST_ABOVE, dtype) < dtype(NMS_THRESHOLD + 0.01)
    # Without the "+1" the same boxes overlap far less: 6.5 x 9 of two 9 x 9 boxes, below the
    # threshold, so the convention is what decides.
    no_plus_one = box_iou(np.array([TOP_BOX]), np.array([AT_THRESHOLD]))[0, 0]
    assert no_plus_one == pytest.approx(6.5 * 9 / (2 * 81 - 6.5 * 9), rel=1e-12)
    assert no_plus_one < NMS_THRESHOLD - 0.03


@pytest.mark.parametrize("second, kept", [(AT_THRESHOLD, 2), (JUST_ABOVE, 1)])
def test_nms_keeps_a_box_at_exactly_the_threshold_and_suppresses_above(second, kept):
    boxes, scores = _network_outputs([TOP_BOX, second], [0.9, 0.8], IMAGE)
    out_boxes, out_scores, out_classes = detections_of_image(
        boxes, scores, (IMAGE, IMAGE), nms_threshold=NMS_THRESHOLD
    )
    np.testing.assert_array_equal(out_boxes, np.array([TOP_BOX, second])[:kept])
    np.testing.assert_array_equal(out_scores, np.float32([0.9, 0.8])[:kept])
    np.testing.assert_array_equal(out_classes, [1] * kept)


@pytest.mark.parametrize("second, kept", [(AT_THRESHOLD, True), (JUST_ABOVE, False)])
def test_nms_boundary_across_blocks_of_a_large_class(second, kept):
    """Over BATCHED_MAX candidates in one class: the boundary pair sits in different rank blocks,
    so the cross-block comparison decides."""
    from nasfpn.inference.detections import BATCHED_MAX, BLOCK

    count = BATCHED_MAX + 72
    side = 16  # boxes on a 16 x 16 grid of 20-px cells never overlap each other
    grid = [(20.0 * (i % side) + 40, 20.0 * (i // side) + 40) for i in range(count)]
    px = np.array([(x, y, x + 9, y + 9) for x, y in grid])
    partner_rank = BLOCK + 10
    px[0], px[partner_rank] = TOP_BOX, second
    scores = np.linspace(0.99, 0.2, count).astype(np.float32)  # rank = index
    image = 512
    boxes, score_map = _network_outputs(px, scores, image)
    out_boxes, out_scores, _ = detections_of_image(
        boxes, score_map, (image, image), nms_threshold=NMS_THRESHOLD, max_boxes=count
    )
    expected = np.ones(count, bool)
    expected[partner_rank] = kept
    np.testing.assert_array_equal(out_scores, scores[expected])
    np.testing.assert_array_equal(out_boxes, px[expected])
