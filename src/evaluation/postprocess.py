"""Detections from network outputs (SPEC.md section 8).

Per image and class c = 1..C-1: keep scores > min_score, scale boxes to the original image, greedy
NMS (IoU > threshold suppresses; "+1" pixel areas, w = x2 - x1 + 1), at most max_boxes per class.
Candidates are sorted by descending score, ties by anchor index (a stable sort).

Greedy NMS is computed with the Cluster-NMS fixed point (Zheng et al. 2020): with A[i, j] = "i
ranks above j and IoU(i, j) > threshold", the greedy result is the unique keep vector with
keep[j] = not any(keep[i] and A[i, j]); iterating that map from all-True reaches it exactly in a
few matrix-vector steps instead of one Python step per kept box.
"""
import numpy as np


def scale_boxes(boxes, height, width):
    """Normalised (y1, x1, y2, x2) -> pixel (x1, y1, x2, y2) of an image of size (height, width)."""
    boxes = np.asarray(boxes, np.float64)
    return boxes[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float64)


def pairwise_iou_plus1(a, b):
    """IoU matrix (len(a), len(b)) of (x1, y1, x2, y2) boxes with the "+1" pixel convention."""
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    w = np.maximum(0.0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1)
    h = np.maximum(0.0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None] - inter)


def _cluster_nms(boxes, threshold):
    """Greedy NMS of boxes already in rank order -> boolean keep mask (Cluster-NMS fixed point)."""
    suppresses = np.triu(pairwise_iou_plus1(boxes, boxes) > threshold, k=1)
    keep = np.ones(len(boxes), bool)
    while True:
        new_keep = ~(keep @ suppresses)  # j survives unless a kept box above it overlaps it
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def greedy_nms(boxes, scores, threshold, max_boxes, block=512):
    """Indices kept by greedy NMS, best first (at most max_boxes).

    Candidates are taken in blocks of `block` ranks: a block is first cleared of boxes overlapping
    an already kept box, then solved exactly within itself. Memory stays block^2 and the work stops
    as soon as max_boxes are kept, so an untrained network's flat score map stays cheap.
    """
    order = np.argsort(-scores, kind="stable")
    kept = np.zeros(0, np.int64)
    for start in range(0, len(order), block):
        candidates = order[start:start + block]
        if len(kept):
            overlap = pairwise_iou_plus1(boxes[kept], boxes[candidates]) > threshold
            candidates = candidates[~overlap.any(axis=0)]
        if len(candidates):
            kept = np.concatenate([kept, candidates[_cluster_nms(boxes[candidates], threshold)]])
        if len(kept) >= max_boxes:
            break
    return kept[:max_boxes]


def candidates(scores, min_score):
    """(anchor index, class index) pairs with score > min_score, grouped by class, anchors ascending.

    A row maximum first selects the few anchors with any class above the threshold, so the full
    A x C map is read once (the per-class loop reads it once per class)."""
    rows = np.flatnonzero(scores.max(axis=1) > min_score)  # contiguous; column 0 re-checked below
    r, c = np.nonzero(scores[rows, 1:] > min_score)
    order = np.argsort(c, kind="stable")
    return rows[r[order]], c[order] + 1


def postprocess_image(boxes, scores, image_hw, min_score=0.1, nms_threshold=0.6, max_boxes=100):
    """One image's network outputs -> (boxes (K, 4) x1y1x2y2 pixels, scores (K,), classes (K,)).

    boxes: (A, 4) normalised (y1, x1, y2, x2); scores: (A, C) sigmoid, column 0 background.
    Output is grouped by class (ascending), best first within a class.
    """
    anchor_idx, class_idx = candidates(scores, min_score)
    out_boxes, out_scores, out_classes = [], [], []
    splits = np.flatnonzero(np.diff(class_idx)) + 1
    for anchors, classes in zip(np.split(anchor_idx, splits), np.split(class_idx, splits)):
        if not len(anchors):
            continue
        cls = classes[0]
        cls_boxes = scale_boxes(boxes[anchors], *image_hw)
        cls_scores = scores[anchors, cls]
        kept = greedy_nms(cls_boxes, cls_scores, nms_threshold, max_boxes)
        out_boxes.append(cls_boxes[kept])
        out_scores.append(cls_scores[kept])
        out_classes.append(np.full(len(kept), cls, np.int64))
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(out_boxes), np.concatenate(out_scores), np.concatenate(out_classes)


def detections_to_coco(image_id, boxes_xyxy, scores, classes, class_to_category):
    """COCO result entries: bbox = [x1, y1, x2 - x1, y2 - y1] in original pixels."""
    return [{"image_id": int(image_id), "category_id": int(class_to_category[int(c)]),
             "bbox": [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2),
                      round(float(b[3] - b[1]), 2)], "score": round(float(s), 5)}
            for b, s, c in zip(boxes_xyxy, scores, classes)]
