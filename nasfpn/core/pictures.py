"""Pictures with boxes: the one way boxes are drawn (infer.py's <stem>_det.jpg, the dataset browser,
report.html's images with the most errors) and the one atomic image writer.

OpenCV is imported inside the functions: importing nasfpn.core stays light."""

from nasfpn.core.atomic import atomic_path
from nasfpn.core.errors import RunError
from nasfpn.core.storage import raise_if_disk_full, storage_errors

LABEL_COLOUR_ON_FILL = (0, 0, 0)  # black text on a band of the box's colour


def line_thickness(shape) -> int:
    """Box line width for a picture of `shape` (H, W, ...): one pixel per 300 of the shorter side."""
    return max(1, round(min(shape[:2]) / 300))


def draw_box(canvas, corners, colour, thickness: int = 1):
    """Draw one box, pixel corners (x1, y1, x2, y2) rounded to whole pixels, on `canvas` in place
    (the colour in the canvas' channel order); returns the rounded corners."""
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in corners)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    return x1, y1, x2, y2


def draw_labelled_boxes(
    canvas,
    corners_list,
    labels,
    colours,
    thickness: int = 1,
    font_scale: float = 0.4,
    label_on_fill: bool = False,
):
    """Every box first, then every label where nasfpn/core/labels.py:place_labels puts it (none
    hiding another; the list's order is the placing order: put the most important first); a
    label is written in its box's colour, or with `label_on_fill` black on a band of that colour
    (readable on any picture). Draws on `canvas` in place and returns it."""
    import cv2

    from nasfpn.core.labels import place_labels

    font = cv2.FONT_HERSHEY_SIMPLEX
    boxes, sizes, heights = [], [], []
    for corners, label, colour in zip(corners_list, labels, colours):
        boxes.append(draw_box(canvas, corners, colour, thickness))
        (width, height), base = cv2.getTextSize(label, font, font_scale, 1)
        sizes.append((width, height + base))
        heights.append(height)
    places = place_labels(boxes, sizes, canvas.shape[:2])
    for label, colour, height, (lx1, ly1, lx2, ly2) in zip(labels, colours, heights, places):
        if label_on_fill:
            cv2.rectangle(canvas, (lx1, ly1), (lx2, ly2), colour, -1)
            cv2.putText(
                canvas, label, (lx1, ly1 + height), font, font_scale, LABEL_COLOUR_ON_FILL, 1, cv2.LINE_AA
            )
        else:
            cv2.putText(canvas, label, (lx1, ly1 + height), font, font_scale, colour, 1, cv2.LINE_AA)
    return canvas


def write_image_atomic(path: str, image_bgr) -> str:
    """Encode `image_bgr` by `path`'s suffix under a temporary name and rename it to `path`; a full
    disk or an unwritable folder is a RunError naming the file."""
    import cv2

    with storage_errors(path), atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, image_bgr):
            raise_if_disk_full(path, RunError("cv2.imwrite returned False"))
            raise RunError(
                f"{path}: OpenCV could not write the image (is the folder writable and is there space left?)"
            )
    return path
