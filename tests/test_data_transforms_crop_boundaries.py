"""The IoU crop at its exact boundaries, with the random draws scripted so a crop lands exactly
where random ones never do: an IoU equal to the minimum (accepted), box centres exactly on each
crop edge (not inside), a crop with no centre inside (the next trial, not a new minimum IoU)."""
import numpy as np
import pytest

from src.data.transforms import CROP_MIN_IOUS, random_iou_crop


class ScriptedDraws:
    """Stands in for numpy's Generator: returns the scripted values in order and checks that each
    is asked for by the expected method, so a changed sequence of draws fails loudly."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def _next(self, method):
        assert self.draws, f"{method}() called after the scripted draws ran out"
        expected, value = self.draws.pop(0)
        assert expected == method, f"{method}() called where the script has {expected}()"
        return value

    def integers(self, high):
        return self._next("integers")

    def uniform(self, low, high):
        value = self._next("uniform")
        assert low <= value <= high, (value, low, high)
        return value


IMAGE = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)


def pick_min_iou(value):
    return ("integers", CROP_MIN_IOUS.index(value))


def crop_at(top, left, h, w):
    return [("uniform", float(h)), ("uniform", float(w)), ("uniform", float(top)), ("uniform", float(left))]


def test_an_iou_equal_to_the_minimum_is_accepted():
    boxes = np.array([[0, 0, 50, 50]], np.float32)   # IoU with the crop (0, 0, 50, 100): 2500 / 5000
    draws = ScriptedDraws(pick_min_iou(0.5), *crop_at(0, 0, 50, 100))
    image, kept, labels = random_iou_crop(IMAGE, boxes, np.array([3], np.int32), draws)
    assert not draws.draws
    np.testing.assert_array_equal(image, IMAGE[0:50, 0:100])
    np.testing.assert_array_equal(kept, boxes)
    assert kept.dtype == np.float32 and labels.tolist() == [3]


def test_box_centres_exactly_on_a_crop_edge_are_not_inside():
    # crop (20, 20, 80, 80); one box centred inside, one centred on each edge
    boxes = np.array([[30, 30, 70, 70],     # centre (50, 50): kept
                      [10, 40, 30, 60],     # centre y = 20, the top edge
                      [40, 10, 60, 30],     # centre x = 20, the left edge
                      [70, 40, 90, 60],     # centre y = 80, the bottom edge
                      [40, 70, 60, 90]],    # centre x = 80, the right edge
                     np.float32)
    draws = ScriptedDraws(pick_min_iou(0.1), *crop_at(20, 20, 60, 60))
    image, kept, labels = random_iou_crop(IMAGE, boxes, np.arange(1, 6, dtype=np.int32), draws)
    assert image.shape == (60, 60, 3)
    assert labels.tolist() == [1]
    np.testing.assert_array_equal(kept, [[10, 10, 50, 50]])  # shifted by the crop's corner


def test_a_crop_without_a_box_centre_inside_tries_again_with_the_same_minimum():
    boxes = np.array([[0, 0, 60, 60]], np.float32)  # centre (30, 30)
    draws = ScriptedDraws(pick_min_iou(0.1),
                          *crop_at(40, 40, 60, 60),   # IoU 400 / 6800 < 0.1: rejected by IoU
                          *crop_at(32, 0, 60, 60),    # IoU 0.33 but the centre (30, 30) is outside
                          *crop_at(0, 0, 50, 50))     # accepted
    image, kept, labels = random_iou_crop(IMAGE, boxes, np.array([2], np.int32), draws)
    assert not draws.draws and image.shape == (50, 50, 3)
    np.testing.assert_array_equal(kept, [[0, 0, 50, 50]])


def test_a_script_that_runs_out_fails_loudly():
    """The stand-in's own check: a crop that is rejected asks for more draws than scripted."""
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    with pytest.raises(AssertionError, match="ran out"):
        random_iou_crop(IMAGE, boxes, np.array([1], np.int32),
                        ScriptedDraws(pick_min_iou(0.9), *crop_at(50, 50, 50, 50)))
