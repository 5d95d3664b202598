"""Where box labels go on a picture so that none hides another (infer.py's pictures, report.html's
worst images, the dataset browser).

Each label is a text rectangle of a known size anchored at its box: the first of a few places
(above the box's top-left corner, inside it, below it) that stays on the picture and overlaps no
label placed before is taken; when all overlap, the label moves down from above its box until it
is clear. Labels are placed in the order given (the caller puts the most important first).
"""

import numpy as np


def _overlaps(rect: tuple, placed: list) -> bool:
    x1, y1, x2, y2 = rect
    return any(x1 < px2 and px1 < x2 and y1 < py2 and py1 < y2 for px1, py1, px2, py2 in placed)


def _on_picture(rect: tuple, width: int, height: int) -> tuple:
    """The rectangle shifted (not resized) to lie on the picture where it fits."""
    x1, y1, x2, y2 = rect
    dx = -x1 if x1 < 0 else min(0, width - x2)
    dy = -y1 if y1 < 0 else min(0, height - y2)
    return x1 + dx, y1 + dy, x2 + dx, y2 + dy


def place_labels(boxes_xyxy, label_sizes, picture_hw) -> list:
    """(x1, y1, x2, y2) of each label's rectangle, in pixels, none overlapping another where the
    picture leaves room. boxes_xyxy: (N, 4) boxes in pixels; label_sizes: (width, height) of each
    label's text rectangle; picture_hw: the picture's (height, width)."""
    height, width = (int(v) for v in picture_hw)
    placed = []
    for box, (w, h) in zip(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4), label_sizes):
        bx1, by1, bx2, by2 = (int(round(v)) for v in box)
        w, h = int(w), int(h)
        candidates = [
            (bx1, by1 - h, bx1 + w, by1),  # above the box
            (bx1, by1, bx1 + w, by1 + h),  # inside, at its top
            (bx1, by2, bx1 + w, by2 + h),  # below the box
            (bx1, by2 - h, bx1 + w, by2),  # inside, at its bottom
        ]
        rect = next(
            (r for r in (_on_picture(c, width, height) for c in candidates) if not _overlaps(r, placed)),
            None,
        )
        if rect is None:  # every place taken: go down from above the box until clear
            rect = _on_picture(candidates[0], width, height)
            for _ in range(len(placed) + 1):
                if not _overlaps(rect, placed):
                    break
                below = max(py2 for px1, py1, px2, py2 in placed if _overlaps(rect, [(px1, py1, px2, py2)]))
                rect = (rect[0], below, rect[2], below + h)
        placed.append(rect)
    return placed
