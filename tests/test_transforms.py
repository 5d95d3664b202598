"""Training/inference transforms against references written here, with fixed random streams."""
import cv2
import numpy as np

from src.data.transforms import (CROP_MIN_IOUS, color_jitter, normalize_chw, preprocess_image,
                                 random_iou_crop)

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def test_normalize_and_preprocess_match_the_formula():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    expected = ((image.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    out = normalize_chw(image)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)
    resized = cv2.resize(image, (96, 64), interpolation=cv2.INTER_LINEAR)  # cv2 takes (W, H)
    np.testing.assert_array_equal(preprocess_image(image, (64, 96)),
                                  ((resized.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1))


def test_color_jitter_matches_reference_factors():
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        order = rng.permutation(3)
        factors = {int(k): rng.uniform(0.6, 1.4) for k in order}
        ref = image.astype(np.float64)
        for k in order:
            f = factors[int(k)]
            grey = ref @ np.array([0.299, 0.587, 0.114])
            if k == 0:
                ref = ref * f
            elif k == 1:
                ref = (ref - grey.mean()) * f + grey.mean()
            else:
                ref = (ref - grey[..., None]) * f + grey[..., None]
        ref = np.clip(ref, 0, 255)
        np.testing.assert_allclose(color_jitter(image, np.random.default_rng(seed)), ref, atol=0.05)


def reference_crop(boxes, rng, height, width):
    """The random crop of docs/conventions.md#data-transforms, written from the text with the same draws: choose a min IoU, up to 50 crops."""
    while True:
        min_iou = CROP_MIN_IOUS[rng.integers(len(CROP_MIN_IOUS))]
        if min_iou is None:
            return None
        for _ in range(50):
            h, w = rng.uniform(0.3 * height, height), rng.uniform(0.3 * width, width)
            if h / w < 0.5 or h / w > 2:
                continue
            top, left = rng.uniform(0, height - h), rng.uniform(0, width - w)
            y1, x1, y2, x2 = int(top), int(left), int(top + h), int(left + w)
            ious, inside = [], []
            for by1, bx1, by2, bx2 in boxes:
                iy = max(0.0, min(by2, y2) - max(by1, y1))
                ix = max(0.0, min(bx2, x2) - max(bx1, x1))
                inter = iy * ix
                ious.append(inter / ((by2 - by1) * (bx2 - bx1) + (y2 - y1) * (x2 - x1) - inter))
                cy, cx = (by1 + by2) / 2, (bx1 + bx2) / 2
                inside.append(y1 < cy < y2 and x1 < cx < x2)
            if max(ious) < min_iou or not any(inside):
                continue
            kept = [[max(b[0], y1) - y1, max(b[1], x1) - x1, min(b[2], y2) - y1, min(b[3], x2) - x1]
                    for b, keep in zip(boxes, inside) if keep]
            return (y1, x1, y2, x2), np.array(kept, np.float32), np.array(inside)


def test_random_iou_crop_matches_reference():
    image = np.arange(120 * 90 * 3, dtype=np.uint32).reshape(120, 90, 3).astype(np.uint8)
    boxes = np.array([[10, 5, 60, 40], [50, 30, 110, 85], [0, 0, 120, 90], [100, 70, 118, 88]],
                     np.float32)
    labels = np.array([1, 2, 3, 1])
    crops = 0
    for seed in range(30):
        ref = reference_crop(boxes.tolist(), np.random.default_rng(seed), 120, 90)
        out, out_boxes, out_labels = random_iou_crop(image, boxes, labels, np.random.default_rng(seed))
        if ref is None:
            assert out is image and out_boxes is boxes
            continue
        crops += 1
        (y1, x1, y2, x2), kept, inside = ref
        np.testing.assert_array_equal(out, image[y1:y2, x1:x2])
        np.testing.assert_allclose(out_boxes, kept, atol=1e-4)
        np.testing.assert_array_equal(out_labels, labels[inside])
    assert crops >= 10
