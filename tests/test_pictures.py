"""nasfpn/core/pictures.py: the one box drawer and image writer of infer, the browser and the report."""

import cv2
import numpy as np
import pytest

from nasfpn.core.pictures import draw_box, line_thickness, write_image_atomic
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


def test_a_label_on_fill_is_a_band_of_the_box_colour_above_it_with_dark_text():
    canvas = np.zeros((60, 80, 3), np.uint8)
    draw_box(canvas, (10, 30, 70, 55), GREEN, 1, "cat 0.90", 0.4, label_on_fill=True)
    (width, height), base = cv2.getTextSize("cat 0.90", cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    band = canvas[30 - height - base : 30, 10 : 10 + width]
    assert (band == GREEN).all(axis=2).mean() > 0.5 and (band.sum(axis=2) < 255).any()


def test_a_plain_label_is_written_in_the_box_colour_and_kept_inside_the_picture():
    canvas = np.zeros((60, 80, 3), np.uint8)
    draw_box(canvas, (10, 0, 70, 55), GREEN, 1, "dog")  # box at the top edge: text baseline at y 10
    text = canvas[:10, 11:40]
    assert text.any() and not text[..., 0].any() and not text[..., 2].any()


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
