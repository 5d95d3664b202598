"""Detections from network outputs (docs/conventions.md#post-processing-and-nms).

Per image and class c = 1..C-1: keep scores > min_score, scale boxes to the original image, greedy
NMS (IoU > threshold suppresses; "+1" pixel areas, w = x2 - x1 + 1), at most max_boxes per class.
Candidates are sorted by descending score, ties by anchor index (a stable sort).

Greedy NMS is computed with the Cluster-NMS fixed point (Zheng et al. 2020): with A[i, j] = "i
ranks above j and IoU(i, j) > threshold", the greedy result is the unique keep vector with
keep[j] = not any(keep[i] and A[i, j]); iterating that map from all-True reaches it exactly in a
few matrix-vector steps instead of one Python step per kept box. All classes are solved at once:
each class's candidates are padded to a power of two and the classes of one padded size form one
batch of IoU matrices, so there is no Python loop over classes or kept boxes.
"""

import numpy as np

from nasfpn.ops.boxes import box_iou


def scale_boxes(boxes, height, width):
    """Normalised (y1, x1, y2, x2) -> pixel (x1, y1, x2, y2) of an image of size (height, width)."""
    boxes = np.asarray(boxes, np.float64)
    return boxes[:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float64)


# Classes with at most this many candidates are solved together, padded to a power of two; a
# class with more (a dense cluster of anchors on one object) takes the blocked path below.
BATCHED_MAX = 128
BLOCK = 64


def _cluster_nms(boxes, threshold, valid=None):
    """Greedy NMS of (..., N, 4) boxes in rank order -> keep mask (..., N) (Cluster-NMS fixed point).

    `valid` (..., N) marks real boxes in a padded batch; padding neither survives nor suppresses."""
    n = boxes.shape[-2]
    valid = np.ones(boxes.shape[:-1], bool) if valid is None else valid
    above = np.triu(np.ones((n, n), bool), k=1)  # i ranks above j
    suppresses = (box_iou(boxes, boxes, plus_one=True) > threshold) & above & valid[..., :, None]
    suppresses = suppresses.astype(np.float32)
    keep = valid
    while True:
        hit = np.matmul(keep[..., None, :].astype(np.float32), suppresses)[..., 0, :] > 0
        new_keep = valid & ~hit  # j survives unless a kept box above it overlaps it
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def _blocked_nms(boxes, starts, counts, threshold, max_boxes, block):
    """Kept candidate positions of several large classes, solved together in blocks of ranks.

    Block b of every class at once: first cleared of boxes that overlap a box already kept in that
    class, then solved exactly within itself. Memory stays classes x block^2, and a class stops
    once it has max_boxes (greedy's first max_boxes do not depend on what follows)."""
    kept = np.full((len(starts), max_boxes), -1, np.int64)
    kept_count = np.zeros(len(starts), np.int64)
    position = np.arange(block)
    for first in range(0, int(counts.max()), block):
        rows = np.flatnonzero((counts > first) & (kept_count < max_boxes))
        if not len(rows):
            break
        valid = first + position < counts[rows, None]
        index = np.where(valid, starts[rows, None] + first + position, starts[rows, None])
        members = boxes[index]
        most = int(kept_count[rows].max())
        if most:
            earlier = kept[rows, :most]
            overlap = box_iou(boxes[np.maximum(earlier, 0)], members, plus_one=True) > threshold
            valid &= ~(overlap & (earlier >= 0)[:, :, None]).any(axis=1)
        keep = _cluster_nms(members, threshold, valid)
        slot = kept_count[rows, None] + np.cumsum(keep, axis=1) - 1
        r, c = np.nonzero(keep & (slot < max_boxes))
        kept[rows[r], slot[r, c]] = index[r, c]
        kept_count[rows] = np.minimum(kept_count[rows] + keep.sum(axis=1), max_boxes)
    return kept[kept >= 0]


def candidates(scores, min_score):
    """(anchor, class, score) of every score > min_score in classes 1..C-1, ordered by class, then
    score descending, then anchor index (the per-class loop's stable order). One pass over the map
    (a per-class loop reads a strided column per class)."""
    scores = np.ascontiguousarray(scores)
    flat = np.flatnonzero(scores.reshape(-1) > min_score)
    anchor, cls = np.divmod(flat, scores.shape[1])
    foreground = cls > 0
    anchor, cls, flat = anchor[foreground], cls[foreground], flat[foreground]
    score = scores.reshape(-1)[flat]
    order = np.lexsort((anchor, -score, cls))
    return anchor[order], cls[order], score[order]


def _nms_all_classes(boxes, starts, counts, threshold, max_boxes):
    """Keep mask over candidates grouped by class (segments starts/counts, each in rank order)."""
    keep = np.zeros(len(boxes), bool)
    padded = np.maximum(8, 2 ** np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64))
    for size in np.unique(padded[counts <= BATCHED_MAX]):
        group = (padded == size) & (counts <= BATCHED_MAX)
        position = np.arange(size)
        index = starts[group, None] + position  # (classes, size) into the candidate arrays
        valid = position < counts[group, None]
        index = np.where(valid, index, starts[group, None])
        kept = _cluster_nms(boxes[index], threshold, valid)
        keep[index[kept]] = True
    large = counts > BATCHED_MAX
    if large.any():
        keep[_blocked_nms(boxes, starts[large], counts[large], threshold, max_boxes, BLOCK)] = True
    # At most max_boxes per class: greedy's first max_boxes are what a loop stopping there keeps.
    rank = np.cumsum(keep)
    rank -= np.repeat(rank[starts] - keep[starts], counts)
    return keep & (rank <= max_boxes)


def detections_of_image(boxes, scores, image_hw, min_score=0.1, nms_threshold=0.6, max_boxes=100):
    """One image's network outputs -> (boxes (K, 4) x1y1x2y2 pixels, scores (K,), classes (K,)).

    boxes: (A, 4) normalised (y1, x1, y2, x2); scores: (A, C) sigmoid, column 0 background.
    Output is grouped by class (ascending), best first within a class (ties: lower anchor first).
    """
    anchor, cls, score = candidates(scores, min_score)
    if not len(anchor):
        return np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros(0, np.int64)
    pixel_boxes = scale_boxes(boxes[anchor], *image_hw)
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    counts = np.diff(np.r_[starts, len(cls)])
    keep = _nms_all_classes(pixel_boxes, starts, counts, nms_threshold, max_boxes)
    return pixel_boxes[keep], score[keep], cls[keep].astype(np.int64)


# The outputs of an exported detections graph (nasfpn/deploy/detections_graph.py), in this order.
DETECTION_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def is_detections_signature(output_names):
    """True when a model's output names are those of a detections graph."""
    return tuple(output_names) == DETECTION_OUTPUTS


def detections_from_graph(boxes, scores, classes, count, image_hw, input_hw):
    """One image's rows of a detections graph -> detections_of_image's result: (boxes (K, 4)
    x1y1x2y2 pixels of the original image, scores (K,), classes (K,)), grouped by class
    (ascending), best first within a class (the graph's order: descending score)."""
    count = int(count)
    scale = np.array([image_hw[1] / input_hw[1], image_hw[0] / input_hw[0]] * 2, np.float64)
    boxes = np.asarray(boxes[:count], np.float64) * scale
    order = np.argsort(classes[:count], kind="stable")
    return (
        boxes[order],
        np.asarray(scores[:count], np.float32)[order],
        np.asarray(classes[:count], np.int64)[order],
    )


def coco_detection(image_id, category_id, box_xyxy, score):
    """One COCO result entry: bbox = [x1, y1, x2 - x1, y2 - y1] in original pixels (rounded to
    0.01 px, score to 1e-5, as the written predictions have always been)."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return {
        "image_id": int(image_id),
        "category_id": int(category_id),
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": round(float(score), 5),
    }


def detections_to_coco(image_id, boxes_xyxy, scores, classes, class_to_category):
    """COCO result entries of one image's detections (class index -> category id by the mapping).
    Classes the mapping lacks are left out: an 81-class network on a file with a subset of the COCO
    names (classes mapped by name) detects classes that file cannot score."""
    return [
        coco_detection(image_id, class_to_category[int(c)], b, s)
        for b, s, c in zip(boxes_xyxy, scores, classes)
        if int(c) in class_to_category
    ]
