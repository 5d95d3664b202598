"""Cases built by hand to sit exactly on the thresholds: anchor matching (IoU > 0.5 matches) and
NMS (IoU > 0.6 suppresses, "+1" pixel areas). Each case first checks, in the test itself, that
its IoU really equals the threshold in the arithmetic the contract names, so a strict ">" and a
">=" give different answers. Random boxes almost never land there.
"""
import numpy as np
import pytest

from src.boxes import AnchorMatcher, Anchors, AnchorSpec
from src.inference.detections import postprocess_image

MATCH_THRESHOLD = 0.5
NMS_THRESHOLD = 0.6

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
    inter = (max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0])) *
             max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1])))
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


@pytest.fixture(scope="module")
def anchors():
    return Anchors(ANCHOR_SPEC)


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
JUST_ABOVE = (2.5 - 1 / 64, 0.0, 11.5 - 1 / 64, 9.0)   # IoU 0.602


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
    # Without the "+1" the same boxes overlap far less (so the convention is what decides).
    assert (9 - 2.5) * 9 / (2 * 81 - (9 - 2.5) * 9) < 0.58


@pytest.mark.parametrize("second, kept", [(AT_THRESHOLD, 2), (JUST_ABOVE, 1)])
def test_nms_keeps_a_box_at_exactly_the_threshold_and_suppresses_above(second, kept):
    boxes, scores = _network_outputs([TOP_BOX, second], [0.9, 0.8], IMAGE)
    out_boxes, out_scores, out_classes = postprocess_image(boxes, scores, (IMAGE, IMAGE),
                                                           nms_threshold=NMS_THRESHOLD)
    np.testing.assert_array_equal(out_boxes, np.array([TOP_BOX, second])[:kept])
    np.testing.assert_array_equal(out_scores, np.float32([0.9, 0.8])[:kept])
    np.testing.assert_array_equal(out_classes, [1] * kept)


@pytest.mark.parametrize("second, kept", [(AT_THRESHOLD, True), (JUST_ABOVE, False)])
def test_nms_boundary_across_blocks_of_a_large_class(second, kept):
    """Over BATCHED_MAX candidates in one class: the boundary pair sits in different rank blocks,
    so the cross-block comparison decides."""
    from src.inference.detections import BATCHED_MAX, BLOCK
    count = BATCHED_MAX + 72
    side = 16  # boxes on a 16 x 16 grid of 20-px cells never overlap each other
    grid = [(20.0 * (i % side) + 40, 20.0 * (i // side) + 40) for i in range(count)]
    px = np.array([(x, y, x + 9, y + 9) for x, y in grid])
    partner_rank = BLOCK + 10
    px[0], px[partner_rank] = TOP_BOX, second
    scores = np.linspace(0.99, 0.2, count).astype(np.float32)  # rank = index
    image = 512
    boxes, score_map = _network_outputs(px, scores, image)
    out_boxes, out_scores, _ = postprocess_image(boxes, score_map, (image, image),
                                                 nms_threshold=NMS_THRESHOLD, max_boxes=count)
    expected = np.ones(count, bool)
    expected[partner_rank] = kept
    np.testing.assert_array_equal(out_scores, scores[expected])
    np.testing.assert_array_equal(out_boxes, px[expected])
