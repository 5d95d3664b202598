"""postprocess_image's output types, its default of 100 boxes per class, and a class of exactly
BATCHED_MAX candidates (the edge between the batched and the blocked path) against greedy NMS."""
import numpy as np

from src.inference.detections import BATCHED_MAX, postprocess_image, scale_boxes
from tests.test_postprocess_nms import greedy_keep


def test_empty_result_has_the_usual_shapes_and_types():
    boxes, scores, classes = postprocess_image(np.zeros((5, 4), np.float32),
                                               np.zeros((5, 3), np.float32), (10, 10))
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
    boxes, kept_scores, classes = postprocess_image(grid_boxes(n), scores, (300, 300))
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
    out_boxes, out_scores, _ = postprocess_image(boxes, scores, (200, 200), max_boxes=n)
    order = np.argsort(-scores[:, 1], kind="stable")
    pixel = scale_boxes(boxes[order], 200, 200)
    keep = greedy_keep(pixel, 0.6)
    assert 0 < keep.sum() < n
    np.testing.assert_array_equal(out_boxes, pixel[keep])
    np.testing.assert_array_equal(out_scores, scores[order, 1][keep])
