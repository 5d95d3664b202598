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


def draw_box(
    canvas,
    corners,
    colour,
    thickness: int = 1,
    label: str = "",
    font_scale: float = 0.4,
    label_on_fill: bool = False,
):
    """Draw one box, pixel corners (x1, y1, x2, y2) rounded to whole pixels, on `canvas` in place
    (the colour in the canvas' channel order); `label` goes above its top-left corner, in the box's
    colour, or with `label_on_fill` black on a band of that colour (readable on any picture)."""
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in corners)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    if not label:
        return canvas
    font = cv2.FONT_HERSHEY_SIMPLEX
    if label_on_fill:
        (width, height), base = cv2.getTextSize(label, font, font_scale, 1)
        top = max(y1 - height - base, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width, top + height + base), colour, -1)
        cv2.putText(canvas, label, (x1, top + height), font, font_scale, LABEL_COLOUR_ON_FILL, 1, cv2.LINE_AA)
    else:
        cv2.putText(canvas, label, (x1, max(y1 - 3, 10)), font, font_scale, colour, 1, cv2.LINE_AA)
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
