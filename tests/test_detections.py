"""Post-processing equals a straightforward per-class loop; COCO metrics on perfect detections."""
import json
import os

import numpy as np
import pytest

from src.evaluation.coco_metrics import coco_evaluate, format_table
from src.inference.detections import detections_to_coco, postprocess_image


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
        boxes[1::7] = boxes[0::7][:len(boxes[1::7])]  # identical boxes with tied scores
        scores[1::7] = scores[0::7][:len(scores[1::7])]
    return boxes, scores


@pytest.mark.parametrize("seed, anchors, max_boxes, batched_max, block", [
    (0, 3000, 100, 256, 512),   # every class on the blocked path
    (1, 3000, 5, 256, 512),     # max_boxes cuts the blocked path short
    (2, 3000, 1000, 256, 64),   # many small blocks
    (3, 400, 100, 256, 7),      # every class batched (about 200 candidates each)
    (4, 400, 3, 256, 512),      # batched, then max_boxes per class
    (5, 150, 100, 79, 16),      # mixed: 3 classes batched (73-78 candidates), 2 blocked (80, 85)
])
def test_vectorised_equals_per_class_loop(seed, anchors, max_boxes, batched_max, block, monkeypatch):
    import src.inference.detections as pp
    monkeypatch.setattr(pp, "BATCHED_MAX", batched_max)
    monkeypatch.setattr(pp, "BLOCK", block)
    rng = np.random.default_rng(seed)
    boxes, scores = random_outputs(rng, anchors)
    got_boxes, got_scores, got_classes = postprocess_image(boxes, scores, (480, 640), 0.1, 0.6, max_boxes)
    ref = reference_postprocess(boxes, scores, (480, 640), 0.1, 0.6, max_boxes)
    assert len(ref) >= min(50, 5 * max_boxes)
    assert [(int(c), float(s)) for c, s in zip(got_classes, got_scores)] == [(c, s) for c, s, _ in ref]
    np.testing.assert_array_equal(got_boxes, np.array([b for _, _, b in ref]))


def test_sparse_score_map_with_many_classes(monkeypatch):
    """81 columns, a few hundred candidates spread over the classes (the batched path's shape)."""
    rng = np.random.default_rng(6)
    boxes, _ = random_outputs(rng, anchors=5000, classes=2, dup=False)
    scores = np.round(1 / (1 + np.exp(-rng.normal(-4.5, 1.0, (5000, 81)))), 3).astype(np.float32)
    got_boxes, got_scores, got_classes = postprocess_image(boxes, scores, (300, 200))
    ref = reference_postprocess(boxes, scores, (300, 200))
    assert len(set(got_classes)) > 40
    assert [(int(c), float(s)) for c, s in zip(got_classes, got_scores)] == [(c, s) for c, s, _ in ref]
    np.testing.assert_array_equal(got_boxes, np.array([b for _, _, b in ref]))


def test_nothing_above_threshold():
    boxes, scores = random_outputs(np.random.default_rng(4), anchors=50)
    out = postprocess_image(boxes, scores * 0.05, (100, 100))
    assert all(len(x) == 0 for x in out)


def test_perfect_detections_give_map_one(tmp_path):
    from src.data.embedded import generate_embedded_dataset
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
        boxes = np.array([[a["bbox"][1] / 96, a["bbox"][0] / 96, (a["bbox"][1] + a["bbox"][3]) / 96,
                           (a["bbox"][0] + a["bbox"][2]) / 96] for a in anns] + [[0, 0, 1, 1]])
        scores = np.zeros((len(boxes), 4))
        for k, a in enumerate(anns):
            scores[k, a["category_id"]] = 0.9
        scores[-1, 1] = 0.05
        detections += detections_to_coco(image["id"], *postprocess_image(boxes, scores, (96, 96)), to_cat)
    stats, text = coco_evaluate(anno, detections, [i["id"] for i in coco["images"]])
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert "Average Precision" in text
    table = format_table(stats)
    assert len(table.splitlines()) == 12 and "AP @[IoU=0.50:0.95 | area=all | maxDets=100]     = 1.0000" in table
