"""Anchor matching (nasfpn/ops/boxes.py AnchorMatcher): the pruned matcher against the release's full loop
bit for bit, edge cases on hand-made exact anchor sets, and IoUs exactly on the 0.5 threshold."""

import numpy as np
import pytest

from nasfpn.ops.boxes import AnchorMatcher, Anchors, AnchorSpec, encode_targets
from tests.conftest import TINY, make_config


# The pruned AnchorMatcher (window + area bound) against the release's full loop, bit for bit.


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
    side = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            rng.uniform(0.001, 0.005, count),
            rng.uniform(0.9, 1.0, count),
            rng.uniform(0.05, 0.4, count),
            rng.choice([0.05, 0.1, 0.2, 0.4, 0.8], count),
        ],
        rng.uniform(0.01, 0.7, count),
    )
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


RELEASE_LOOP_CONFIGS = ["release640", "tiny128", "wide256x384"]


@pytest.fixture(scope="module")
def anchors(request):
    """The hand-picked ANCHOR_SPEC grid of the threshold cases; a test parametrized (indirectly) with
    one of RELEASE_LOOP_CONFIGS gets that configuration's anchors instead."""
    name = getattr(request, "param", None)
    if name is None:
        return Anchors(ANCHOR_SPEC)
    overrides = {"release640": (), "tiny128": TINY, "wide256x384": TINY[1:] + ("--img_shape=[256,384]",)}[
        name
    ]
    cfg = make_config(*overrides)
    return Anchors(cfg.anchors.spec(cfg.model.img_shape))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
@pytest.mark.parametrize("anchors", RELEASE_LOOP_CONFIGS, indirect=True)
def test_pruned_matching_equals_release_loop(anchors, seed, threshold):
    rng = np.random.default_rng(seed)
    boxes = awkward_boxes(rng, int(rng.integers(1, 25)))
    owner = AnchorMatcher(anchors, threshold).match(boxes)
    np.testing.assert_array_equal(owner, release_owner(boxes, anchors.corners, threshold))


@pytest.mark.parametrize("anchors", RELEASE_LOOP_CONFIGS, indirect=True)
def test_degenerate_boxes_follow_the_release(anchors):
    # A zero-area box and a box between anchors: the release's argmax picks anchor 0 / the best.
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0005, 0.0005], [0.999, 0.999, 1, 1]], np.float32)
    owner = AnchorMatcher(anchors).match(boxes)
    np.testing.assert_array_equal(owner, release_owner(boxes, anchors.corners, 0.5))


# AnchorMatcher edge cases on a hand-made anchor set whose coordinates are exact binary fractions,
# so IoUs such as 0.5 and exact ties are exact in float32 (found missing by mutation testing).


@pytest.fixture(scope="module")
def grid2x2():
    """Four 0.5 x 0.5 anchors tiling the unit square: index = 2 * row + col, corners exact."""
    anchors = Anchors(
        AnchorSpec(img_shape=(128, 128), steps=(64,), anchor_sizes=(64,), aspect_ratios=(1.0,), num_scales=1)
    )
    np.testing.assert_array_equal(
        anchors.corners, [[0, 0, 0.5, 0.5], [0, 0.5, 0.5, 1], [0.5, 0, 1, 0.5], [0.5, 0.5, 1, 1]]
    )
    return anchors


def test_iou_exactly_at_the_threshold_is_not_a_match(grid2x2):
    # The top half covers anchors 0 and 1 with IoU exactly 0.5 each: anchor 0 is forced (first
    # on the tie), anchor 1 stays background because a match needs IoU > threshold.
    owner = AnchorMatcher(grid2x2, 0.5).match(np.array([[0, 0, 0.5, 1]], np.float32))
    assert owner.tolist() == [0, -1, -1, -1]
    loose = AnchorMatcher(grid2x2, 0.49).match(np.array([[0, 0, 0.5, 1]], np.float32))
    assert loose.tolist() == [0, 0, -1, -1]


def test_default_threshold_is_one_half():
    # A mid-sized box on the tiny test family's anchors: several anchors pass IoU 0.5 besides the
    # forced best one, and the default matcher takes exactly the release's set at 0.5.
    cfg = make_config(*TINY)
    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    boxes = np.array([[0.2, 0.3, 0.55, 0.6], [0.5, 0.1, 0.9, 0.35]], np.float32)
    owner = AnchorMatcher(anchors).match(boxes)
    np.testing.assert_array_equal(owner, release_owner(boxes, anchors.corners, 0.5))
    assert (owner >= 0).sum() > len(boxes)


def test_box_outside_every_anchor_takes_anchor_zero(grid2x2):
    # No anchor overlaps: the release's argmax over all-zero IoUs forces anchor 0.
    boxes = np.array([[1.5, 1.5, 1.6, 1.6]], np.float32)
    owner = AnchorMatcher(grid2x2).match(boxes)
    assert owner.tolist() == release_owner(boxes, grid2x2.corners, 0.5).tolist() == [0, -1, -1, -1]


def test_encode_returns_release_dtypes_and_float32_arithmetic():
    # Targets are float32 / int32 / int32 whatever the input, and float64 boxes are rounded to
    # float32 first: the same bits as float32 input (float64 arithmetic would move low bits).
    cfg = make_config(*TINY)
    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    rng = np.random.default_rng(11)
    y1, x1 = rng.uniform(0, 0.5, (2, 12))
    boxes64 = np.stack([y1, x1, y1 + rng.uniform(0.1, 0.5, 12), x1 + rng.uniform(0.1, 0.5, 12)], 1)
    labels = rng.integers(1, 5, 12)
    matcher = AnchorMatcher(anchors)
    loc, label, num = matcher.encode(boxes64, labels)
    assert (loc.dtype, label.dtype, num.dtype) == (np.float32, np.int32, np.int32)
    ref_loc, ref_label, ref_num = matcher.encode(boxes64.astype(np.float32), labels)
    np.testing.assert_array_equal(label, ref_label)
    assert loc.tobytes() == ref_loc.tobytes() and num.tolist() == ref_num.tolist() != [0]
    owner = matcher.match(boxes64.astype(np.float32))
    loc_direct = encode_targets(boxes64, labels, owner, anchors.cycxhw)[0]
    assert loc_direct.tobytes() == ref_loc.tobytes()


def test_num_scales_comes_from_the_config():
    cfg = make_config(*TINY, "--num_scales=2")
    spec = cfg.anchors.spec(cfg.model.img_shape)
    assert spec.num_scales == 2 and spec.anchors_per_cell == 6
    assert len(Anchors(spec)) == 6 * sum(h * w for h, w in spec.feature_sizes)


def test_encode_uses_the_matchers_prior_scaling(grid2x2):
    # Anchor 0 has centre (.25, .25) and side .5; the box is anchor 0 moved down by .05 and
    # widened to .625: t_cy = .05 / (.5 * s0), t_cx = .0625 / (.5 * s0), t_w = log(1.25) / s1.
    box = np.array([[0.05, 0, 0.55, 0.625]], np.float32)
    for s0, s1 in [(0.1, 0.2), (0.25, 0.5)]:
        loc, label, num = AnchorMatcher(grid2x2, 0.5, (s0, s1)).encode(box, [3])
        assert label.tolist() == [3, 0, 0, 0] and num.tolist() == [1]
        np.testing.assert_allclose(
            loc[0], [0.05 / (0.5 * s0), 0.0625 / (0.5 * s0), 0, np.log(1.25) / s1], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_array_equal(loc[1:], 0)
    owner = np.array([0, -1, -1, -1])
    default = encode_targets(box, [3], owner, grid2x2.cycxhw)[0]
    np.testing.assert_allclose(default[0, 0], 0.05 / (0.5 * 0.1), rtol=1e-5)


def test_box_intersection_is_continuous_unless_plus_one_is_asked():
    from nasfpn.ops.boxes import box_intersection

    a = np.array([[0.0, 0.0, 2.0, 2.0]], np.float32)
    b = np.array([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]], np.float32)
    np.testing.assert_array_equal(box_intersection(a, b), [[1.0, 0.0]])  # 1 x 1
    np.testing.assert_array_equal(box_intersection(a, b, plus_one=True), [[4.0, 0.0]])  # 2 x 2 pixels


# Cases built by hand to sit exactly on the matching threshold (IoU > 0.5 matches). Each case
# first checks, in the test itself, that its IoU really equals the threshold in float32, so a strict
# ">" and a ">=" give different answers. Random boxes almost never land there.

MATCH_THRESHOLD = 0.5

# 128x128 input, level P3 (step 8) has 16x16 cells and base anchor 8 px = 1/16: the ratio-1,
# scale-1 anchor (index 3 of the 9: ratios 0.5, 1, 2 outer, scales inner) of cell (row 5, col 5)
# is exactly the square [5/16, 6/16]^2, so boxes on the 1/16 grid give exact float32 IoUs.
ANCHOR_SPEC = AnchorSpec((128, 128), (8, 16, 32, 64, 128), (8, 16, 32, 64, 128), (0.5, 1.0, 2.0))
CELLS_PER_ROW = 16
ANCHORS_PER_CELL = 9
SQUARE = 3
ROW = COL = 5
ANCHOR = (ROW * CELLS_PER_ROW + COL) * ANCHORS_PER_CELL + SQUARE


def iou_float32(a, b):
    """IoU of two (y1, x1, y2, x2) boxes in float32, as the release: inter / (area_a + area_b - inter)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0])) * max(
        np.float32(0), min(a[3], b[3]) - max(a[1], b[1])
    )
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


def test_the_hand_picked_anchor_is_the_exact_square(anchors):
    np.testing.assert_array_equal(anchors.corners[ANCHOR] * 16, [ROW, COL, ROW + 1, COL + 1])


def _matched(anchors, box):
    owner = AnchorMatcher(anchors, MATCH_THRESHOLD).match(np.array([box], np.float32))
    return owner


def _best_anchor(anchors, box):
    """The GT's best anchor (forced to match whatever its IoU) computed here over all anchors."""
    ious = np.array([iou_float32(box, c) for c in anchors.corners])
    return int(np.argmax(ious)), ious


def test_iou_exactly_at_the_match_threshold_does_not_match(anchors):
    # Twice the anchor's width to the right: the anchor is exactly half of the box.
    box = np.array([ROW, COL, ROW + 1, COL + 2], np.float32) / 16
    iou = iou_float32(box, anchors.corners[ANCHOR])
    assert iou == np.float32(MATCH_THRESHOLD)  # really on the boundary, in float32
    best, ious = _best_anchor(anchors, box)
    assert best != ANCHOR and ious[best] > MATCH_THRESHOLD  # so the forced-best rule is not involved
    owner = _matched(anchors, box)
    assert owner[ANCHOR] == -1
    # Everything that did match is strictly above the threshold, and those are all of them.
    np.testing.assert_array_equal(np.flatnonzero(owner >= 0), np.flatnonzero(ious > MATCH_THRESHOLD))


def test_iou_just_above_the_match_threshold_matches(anchors):
    box = np.array([ROW, COL, ROW + 1, COL + 2 - 1 / 64], np.float32) / 16
    iou = iou_float32(box, anchors.corners[ANCHOR])
    assert MATCH_THRESHOLD < iou < MATCH_THRESHOLD + 0.01
    best, _ = _best_anchor(anchors, box)
    assert best != ANCHOR
    assert _matched(anchors, box)[ANCHOR] == 0


def test_the_best_anchor_matches_even_below_the_threshold(anchors):
    """A GT whose best IoU is under 0.5 still gets that one anchor (and only it); on a tie the
    first anchor index wins."""
    box = np.array([ROW, COL, ROW + 0.5, COL + 4], np.float32) / 16  # 8:1, no anchor shape near
    best, ious = _best_anchor(anchors, box)
    assert ious[best] < MATCH_THRESHOLD
    assert (ious == ious[best]).sum() == 2  # a tie, so "first on ties" is exercised too
    np.testing.assert_array_equal(np.flatnonzero(_matched(anchors, box) >= 0), [best])


def test_equal_iou_keeps_the_earlier_gt(anchors):
    """Two identical GT boxes: every anchor has equal IoU with both, so the first keeps them all."""
    box = np.array([ROW, COL, ROW + 1, COL + 2 - 1 / 64], np.float32) / 16
    owner = AnchorMatcher(anchors, MATCH_THRESHOLD).match(np.array([box, box], np.float32))
    assert (owner >= 0).sum() >= 2 and set(owner[owner >= 0].tolist()) == {0}


def test_xywh_iou_equals_pycocotools_on_random_and_degenerate_boxes():
    """box_iou_xywh (the error analysis' IoU) against pycocotools' own C IoU, the one COCOeval
    matches with; empty boxes included (pycocotools gives 0 where the union is 0)."""
    from pycocotools import mask as mask_utils

    from nasfpn.ops.boxes import box_iou_xywh

    rng = np.random.default_rng(3)
    dets = np.concatenate([rng.uniform(0, 50, (40, 2)), rng.uniform(0, 30, (40, 2))], axis=1)
    gts = np.concatenate([rng.uniform(0, 50, (25, 2)), rng.uniform(0, 30, (25, 2))], axis=1)
    dets[:3, 2:] = 0.0  # empty detections
    gts[:2, 2] = 0.0
    gts[2] = dets[5]  # an exact overlap: IoU 1
    expected = np.asarray(mask_utils.iou(dets.tolist(), gts.tolist(), [0] * len(gts)))
    # pycocotools computes in double as we do; the sums differ only in association order
    np.testing.assert_allclose(box_iou_xywh(dets, gts), expected, rtol=1e-12, atol=1e-15)
    assert box_iou_xywh(dets[5], gts[2])[0, 0] == 1.0
