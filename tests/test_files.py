"""nasfpn/core/files.py: the one image-folder listing (infer.py folders, the 310 twin, INT8 calibration)."""

import os

from nasfpn.core.files import IMAGE_SUFFIXES, image_files_in


def test_image_files_in_lists_visible_image_files_sorted_by_name(tmp_path):
    for name in ("b.JPG", "a.png", "c.jpeg", "d.bmp", "notes.txt", ".hidden.jpg", "e.jpg.part"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()  # a folder named like an image is not an image
    assert image_files_in(str(tmp_path)) == [
        os.path.join(str(tmp_path), n) for n in ("a.png", "b.JPG", "c.jpeg", "d.bmp")
    ]
    assert IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".bmp")


def test_image_files_in_an_empty_folder_is_empty(tmp_path):
    assert image_files_in(str(tmp_path)) == []
