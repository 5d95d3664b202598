"""The Cluster-NMS core on its own, without a validity mask (every box real), single and batched,
against a greedy loop written here with the "+1" pixel areas."""
import numpy as np
import pytest

from src.inference.detections import _cluster_nms


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
