"""The pruned AnchorMatcher (window + area bound) against the release's full loop, bit for bit."""
import numpy as np
import pytest

from src.boxes import AnchorMatcher, Anchors, AnchorSpec
from tests.conftest import TINY, make_config


def release_owner(boxes, corners, threshold):
    """The release's matching, literally: each GT in turn against every anchor; its argmax anchor
    forced to 2.0; an anchor moves to a later GT only on a strictly higher score."""
    areas = (corners[:, 3] - corners[:, 1]) * (corners[:, 2] - corners[:, 0])
    pre = np.zeros(len(corners), np.float32)
    owner = np.full(len(corners), -1)
    for g, box in enumerate(boxes):
        ymin = np.maximum(corners[:, 0], box[0])
        xmin = np.maximum(corners[:, 1], box[1])
        ymax = np.minimum(corners[:, 2], box[2])
        xmax = np.minimum(corners[:, 3], box[3])
        inter = np.maximum(ymax - ymin, np.float32(0)) * np.maximum(xmax - xmin, np.float32(0))
        score = inter / (areas + (box[2] - box[0]) * (box[3] - box[1]) - inter)
        score[np.argmax(score)] = 2.0
        take = (score > np.float32(threshold)) & (score > pre)
        pre = np.where(take, score, pre)
        owner = np.where(take, g, owner)
    return owner


def awkward_boxes(rng, count):
    """Tiny (1-3 px), huge (the whole image), border-hugging, anchor-shaped and duplicate boxes."""
    kind = rng.integers(0, 5, count)
    side = np.select([kind == 0, kind == 1, kind == 2, kind == 3],
                     [rng.uniform(0.001, 0.005, count), rng.uniform(0.9, 1.0, count),
                      rng.uniform(0.05, 0.4, count), rng.choice([0.05, 0.1, 0.2, 0.4, 0.8], count)],
                     rng.uniform(0.01, 0.7, count))
    h = np.minimum(side * rng.uniform(0.5, 2.0, count), 1.0)
    w = np.minimum(side * rng.uniform(0.5, 2.0, count), 1.0)
    y1 = rng.uniform(0, 1, count) * (1 - h)
    x1 = rng.uniform(0, 1, count) * (1 - w)
    border = kind == 2  # pushed against an edge
    y1[border] = np.where(rng.random(border.sum()) < 0.5, 0.0, 1 - h[border])
    boxes = np.stack([y1, x1, y1 + h, x1 + w], 1).astype(np.float32)
    boxes[kind == 1] = [0, 0, 1, 1]
    if count > 3:
        boxes[-1] = boxes[1]  # exact duplicate: the earlier GT keeps the tied anchors
    return np.clip(boxes, 0, 1)


@pytest.fixture(scope="module", params=["release640", "tiny128", "wide256x384"])
def anchors(request):
    overrides = {"release640": (), "tiny128": TINY,
                 "wide256x384": TINY[1:] + ("--img_shape=[256,384]",)}[request.param]
    return Anchors(AnchorSpec.from_config(make_config(*overrides)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_pruned_matching_equals_release_loop(anchors, seed, threshold):
    rng = np.random.default_rng(seed)
    boxes = awkward_boxes(rng, int(rng.integers(1, 25)))
    owner = AnchorMatcher(anchors, threshold).match(boxes)
    np.testing.assert_array_equal(owner, release_owner(boxes, anchors.corners, threshold))


def test_degenerate_boxes_follow_the_release(anchors):
    # A zero-area box and a box between anchors: the release's argmax picks anchor 0 / the best.
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0005, 0.0005], [0.999, 0.999, 1, 1]],
                     np.float32)
    owner = AnchorMatcher(anchors).match(boxes)
    np.testing.assert_array_equal(owner, release_owner(boxes, anchors.corners, 0.5))
