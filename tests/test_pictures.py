"""nasfpn/core/pictures.py: the one box drawer and image writer of infer, the browser and the report."""

import cv2
import numpy as np
import pytest

from nasfpn.core.pictures import draw_box, draw_labelled_boxes, line_thickness, write_image_atomic
from nasfpn.core.storage import StorageError

GREEN = (0, 255, 0)


def test_a_box_is_drawn_on_its_rounded_corners_and_nowhere_else():
    canvas = np.zeros((40, 50, 3), np.uint8)
    draw_box(canvas, (5.4, 6.6, 20.2, 30.5), GREEN, thickness=1)  # -> (5, 7) .. (20, 30) (half to even)
    drawn = np.argwhere(canvas.any(axis=2))
    assert drawn[:, 0].min() == 7 and drawn[:, 0].max() == 30
    assert drawn[:, 1].min() == 5 and drawn[:, 1].max() == 20
    assert (canvas[7, 5:21] == GREEN).all() and (canvas[8:30, 5] == GREEN).all()
    assert not canvas[8:30, 6:20].any()  # the inside stays as it was


def test_labels_on_fill_are_bands_of_the_box_colour_with_dark_text_none_over_another():
    canvas = np.zeros((80, 120, 3), np.uint8)
    boxes = [(10, 30, 70, 55), (12, 32, 72, 57)]  # nearly the same box: the labels must not stack
    draw_labelled_boxes(canvas, boxes, ["cat 0.90", "dog 0.80"], [GREEN, GREEN], 1, 0.4, label_on_fill=True)
    outline_only = np.zeros_like(canvas)
    for box in boxes:
        draw_box(outline_only, box, GREEN)
    extra = canvas.any(axis=2) & ~outline_only.any(axis=2)
    (width, height), base = cv2.getTextSize("cat 0.90", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    # two bands of the text's size each, the second placed clear of the first (dark text inside)
    assert extra.sum() >= 2 * width * (height + base) * 0.6


def test_plain_labels_are_written_in_the_box_colour():
    canvas = np.zeros((60, 80, 3), np.uint8)
    draw_labelled_boxes(canvas, [(10, 20, 70, 55)], ["dog"], [GREEN])
    outline_only = np.zeros_like(canvas)
    draw_box(outline_only, (10, 20, 70, 55), GREEN)
    text = canvas.any(axis=2) & ~outline_only.any(axis=2)
    assert text.any() and not canvas[..., 0].any() and not canvas[..., 2].any()


def test_line_thickness_grows_with_the_shorter_side():
    assert [line_thickness((h, 2000)) for h in (100, 449, 451, 900)] == [1, 1, 2, 3]


def test_write_image_atomic_writes_a_file_that_reopens_equal(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    path = write_image_atomic(str(tmp_path / "a.png"), image)
    assert np.array_equal(cv2.imread(path), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary left


def test_write_image_atomic_into_a_file_in_the_way_is_a_user_error_naming_it(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(StorageError, match=r"^writing .*/f/a\.png: a file is in the way"):
        write_image_atomic(str(tmp_path / "f" / "a.png"), np.zeros((4, 4, 3), np.uint8))
