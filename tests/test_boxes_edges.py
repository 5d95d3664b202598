"""AnchorMatcher edge cases on a hand-made anchor set whose coordinates are exact binary fractions,
so IoUs such as 0.5 and exact ties are exact in float32 (found missing by mutation testing)."""
import numpy as np
import pytest

from src.boxes import AnchorMatcher, Anchors, AnchorSpec, encode_targets
from tests.conftest import TINY, make_config
from tests.test_matching import release_owner  # the release loop, written once


@pytest.fixture(scope="module")
def grid2x2():
    """Four 0.5 x 0.5 anchors tiling the unit square: index = 2 * row + col, corners exact."""
    anchors = Anchors(AnchorSpec(img_shape=(128, 128), steps=(64,), anchor_sizes=(64,),
                                 aspect_ratios=(1.0,), num_scales=1))
    np.testing.assert_array_equal(anchors.corners, [[0, 0, .5, .5], [0, .5, .5, 1],
                                                    [.5, 0, 1, .5], [.5, .5, 1, 1]])
    return anchors


def test_iou_exactly_at_the_threshold_is_not_a_match(grid2x2):
    # The top half covers anchors 0 and 1 with IoU exactly 0.5 each: anchor 0 is forced (first
    # on the tie), anchor 1 stays background because a match needs IoU > threshold.
    owner = AnchorMatcher(grid2x2, 0.5).match(np.array([[0, 0, .5, 1]], np.float32))
    assert owner.tolist() == [0, -1, -1, -1]
    loose = AnchorMatcher(grid2x2, 0.49).match(np.array([[0, 0, .5, 1]], np.float32))
    assert loose.tolist() == [0, 0, -1, -1]


def test_default_threshold_is_one_half():
    # A mid-sized box on the tiny test family's anchors: several anchors pass IoU 0.5 besides the
    # forced best one, and the default matcher takes exactly the release's set at 0.5.
    anchors = Anchors(AnchorSpec.from_config(make_config(*TINY)))
    boxes = np.array([[.2, .3, .55, .6], [.5, .1, .9, .35]], np.float32)
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
    anchors = Anchors(AnchorSpec.from_config(make_config(*TINY)))
    rng = np.random.default_rng(11)
    y1, x1 = rng.uniform(0, .5, (2, 12))
    boxes64 = np.stack([y1, x1, y1 + rng.uniform(.1, .5, 12), x1 + rng.uniform(.1, .5, 12)], 1)
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
    spec = AnchorSpec.from_config(make_config(*TINY, "--num_scales=2"))
    assert spec.num_scales == 2 and spec.anchors_per_cell == 6
    assert len(Anchors(spec)) == 6 * sum(h * w for h, w in spec.feature_sizes)


def test_encode_uses_the_matchers_prior_scaling(grid2x2):
    # Anchor 0 has centre (.25, .25) and side .5; the box is anchor 0 moved down by .05 and
    # widened to .625: t_cy = .05 / (.5 * s0), t_cx = .0625 / (.5 * s0), t_w = log(1.25) / s1.
    box = np.array([[.05, 0, .55, .625]], np.float32)
    for s0, s1 in [(0.1, 0.2), (0.25, 0.5)]:
        loc, label, num = AnchorMatcher(grid2x2, 0.5, (s0, s1)).encode(box, [3])
        assert label.tolist() == [3, 0, 0, 0] and num.tolist() == [1]
        np.testing.assert_allclose(loc[0], [.05 / (.5 * s0), .0625 / (.5 * s0), 0,
                                            np.log(1.25) / s1], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(loc[1:], 0)
    owner = np.array([0, -1, -1, -1])
    default = encode_targets(box, [3], owner, grid2x2.cycxhw)[0]
    np.testing.assert_allclose(default[0, 0], .05 / (.5 * 0.1), rtol=1e-5)


def test_box_intersection_is_continuous_unless_plus_one_is_asked():
    from src.boxes import box_intersection
    a = np.array([[0.0, 0.0, 2.0, 2.0]], np.float32)
    b = np.array([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]], np.float32)
    np.testing.assert_array_equal(box_intersection(a, b), [[1.0, 0.0]])               # 1 x 1
    np.testing.assert_array_equal(box_intersection(a, b, plus_one=True), [[4.0, 0.0]])  # 2 x 2 pixels
