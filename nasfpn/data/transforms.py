"""Image transforms: decoding, inference preprocessing, training augmentation
(docs/conventions.md#data-transforms).

Boxes here are (y1, x1, y2, x2) in pixels of the current image unless said otherwise.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from nasfpn.ops.boxes import box_iou
from nasfpn.core.errors import UserError

MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)

# SSD-style random crop: None = keep the whole image, else the minimum IoU a box must reach.
CROP_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9)
CROP_TRIALS = 50


class ImageDecodeError(UserError):
    """An image file that cannot be decoded."""


def decode_image(source):
    """RGB uint8 HxWx3 from a file path or encoded bytes; ImageDecodeError if unreadable."""
    if isinstance(source, (bytes, bytearray, np.ndarray)):
        buffer = np.frombuffer(source, np.uint8)
        name = "image bytes"
    else:
        try:
            with open(source, "rb") as f:
                buffer = np.frombuffer(f.read(), np.uint8)
        except OSError as exc:
            raise ImageDecodeError(f"{source}: cannot read ({exc.strerror})") from None
        name = str(source)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ImageDecodeError(f"{name}: not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def normalize_chw(image_rgb):
    """(HxWx3 RGB 0-255) -> 3xHxW float32 normalised with the ImageNet mean/std."""
    # Per channel planes: the same float32 arithmetic as broadcasting over HWC, ~6x faster.
    planes = cv2.split(np.asarray(image_rgb).astype(np.float32, copy=False))
    return np.stack([(plane - MEAN_RGB[c]) / STD_RGB[c] for c, plane in enumerate(planes)])


def preprocess_image(image_rgb, img_shape):
    """The inference transform (eval, infer.py, the 310 twin): resize to img_shape (H, W) with
    bilinear interpolation, no aspect kept; normalise; CHW float32."""
    height, width = int(img_shape[0]), int(img_shape[1])
    resized = cv2.resize(image_rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    return normalize_chw(resized)


def random_iou_crop(image, boxes, labels, rng):
    """SSD random crop: pick a minimum IoU from CROP_MIN_IOUS (None keeps the image); try up to
    CROP_TRIALS crops with sides in [0.3, 1] of the image and aspect in [0.5, 2]; a crop is
    accepted when some box reaches the IoU and at least one box centre lies inside; boxes whose
    centre is inside are kept, clipped to the crop and shifted. Returns (image, boxes, labels)."""
    height, width = image.shape[:2]
    while True:
        min_iou = CROP_MIN_IOUS[rng.integers(len(CROP_MIN_IOUS))]
        if min_iou is None:
            return image, boxes, labels
        for _ in range(CROP_TRIALS):
            h = rng.uniform(0.3 * height, height)
            w = rng.uniform(0.3 * width, width)
            if not 0.5 <= h / w <= 2:
                continue
            top = rng.uniform(0, height - h)
            left = rng.uniform(0, width - w)
            crop = np.array([int(top), int(left), int(top + h), int(left + w)], np.float32)
            if box_iou(boxes, crop[None]).max() < min_iou:
                continue
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = (
                (centres[:, 0] > crop[0])
                & (centres[:, 1] > crop[1])
                & (centres[:, 0] < crop[2])
                & (centres[:, 1] < crop[3])
            )
            if not inside.any():
                continue
            kept = boxes[inside].copy()
            kept[:, :2] = np.maximum(kept[:, :2], crop[:2]) - crop[:2]
            kept[:, 2:] = np.minimum(kept[:, 2:], crop[2:]) - crop[:2]
            y1, x1, y2, x2 = crop.astype(int)
            return image[y1:y2, x1:x2], kept, labels[inside]


def horizontal_flip(image, boxes):
    """Mirror the image and its boxes, given normalised (y1, x1, y2, x2): x -> 1 - x."""
    flipped = boxes.copy()
    flipped[:, 1] = 1 - boxes[:, 3]
    flipped[:, 3] = 1 - boxes[:, 1]
    return cv2.flip(image, 1), flipped


def color_jitter(image, rng, brightness=0.4, contrast=0.4, saturation=0.4):
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x], in random order."""
    out = image.astype(np.float32)
    ops = [("b", brightness), ("c", contrast), ("s", saturation)]
    for idx in rng.permutation(len(ops)):
        kind, amount = ops[idx]
        factor = rng.uniform(1 - amount, 1 + amount)
        if kind == "b":
            out *= np.float32(factor)
        elif kind == "c":  # blend with the mean grey level (cv2: grey = .299 R + .587 G + .114 B)
            mean = float(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).mean())
            out = cv2.addWeighted(out, factor, out, 0.0, mean * (1 - factor))
        else:  # blend with the pixel's own grey level
            grey = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            out = cv2.addWeighted(out, factor, grey, 1 - factor, 0.0)
    return np.clip(out, 0, 255, out=out)


@dataclass(frozen=True)
class ScaleJitter:
    """Scale-jitter settings: factors drawn in [low, high] of img_shape; boxes left thinner or
    shorter than min_box_size pixels (of the network input) after the crop are dropped."""

    low: float
    high: float
    min_box_size: float

    @classmethod
    def from_section(cls, augmentation):
        """The settings of the augmentation section, or None when its scale_jitter is off."""
        if not augmentation.scale_jitter:
            return None
        return cls(
            float(augmentation.scale_jitter_min),
            float(augmentation.scale_jitter_max),
            float(augmentation.min_box_size),
        )


def jittered_size(image_hw, img_shape, factor):
    """(height, width) of an image resized by `factor` of img_shape keeping its aspect ratio: it
    fits inside factor x img_shape and touches it on one side (mmdetection's keep_ratio rescale;
    at a square img_shape its long side is factor x the side). Rounded half up, at least 1."""
    height, width = image_hw
    scale = factor * min(img_shape[0] / height, img_shape[1] / width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def scale_jitter_crop(image, boxes_px, labels, img_shape, factor, top, left, min_box_size):
    """Resize `image` to jittered_size(factor), then cut the img_shape window at (top, left) of it
    (or all of it along a side shorter than img_shape: no padding here). Boxes are scaled by the
    resize, shifted, clipped to the window; those left with a side below min_box_size pixels (or
    empty) are dropped. Returns (image of at most img_shape, boxes in its pixels, labels)."""
    new_h, new_w = jittered_size(image.shape[:2], img_shape, factor)
    if not (0 <= top <= max(new_h - img_shape[0], 0) and 0 <= left <= max(new_w - img_shape[1], 0)):
        raise ValueError(f"crop offset ({top}, {left}) outside the {new_h}x{new_w} resized image")
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    window = resized[top : top + img_shape[0], left : left + img_shape[1]]
    win_h, win_w = window.shape[:2]
    scale = np.array([new_h / image.shape[0], new_w / image.shape[1]] * 2, np.float32)
    boxes = boxes_px * scale - np.array([top, left, top, left], np.float32)
    boxes = np.clip(boxes, 0, np.array([win_h, win_w, win_h, win_w], np.float32))
    sides = boxes[:, 2:] - boxes[:, :2]
    kept = (sides > 0).all(axis=1) & (sides >= min_box_size).all(axis=1)
    return window, boxes[kept], labels[kept]


def random_scale_jitter(image, boxes_px, labels, img_shape, rng, jitter):
    """scale_jitter_crop with its factor, then its top and left offsets, drawn from `rng`."""
    factor = rng.uniform(jitter.low, jitter.high)
    new_h, new_w = jittered_size(image.shape[:2], img_shape, factor)
    top = int(rng.integers(max(new_h - img_shape[0], 0) + 1))
    left = int(rng.integers(max(new_w - img_shape[1], 0) + 1))
    return scale_jitter_crop(image, boxes_px, labels, img_shape, factor, top, left, jitter.min_box_size)


def pad_to(image, img_shape):
    """`image` at the top left of an img_shape canvas of the mean colour (0 once normalised, the
    value mmdetection pads normalised images with)."""
    canvas = np.empty((int(img_shape[0]), int(img_shape[1]), 3), np.float32)
    canvas[:] = MEAN_RGB
    canvas[: image.shape[0], : image.shape[1]] = image
    return canvas


def _augment_jittered(image, boxes_px, labels, img_shape, rng, jitter):
    """Scale jitter + crop, flip and colour jitter of the window, then padding to img_shape."""
    window, boxes_px, labels = random_scale_jitter(image, boxes_px, labels, img_shape, rng, jitter)
    win_h, win_w = window.shape[:2]
    boxes = boxes_px / np.array([win_h, win_w, win_h, win_w], np.float32)
    if rng.random() < 0.5:
        window, boxes = horizontal_flip(window, boxes)
    canvas = pad_to(color_jitter(window, rng), img_shape)
    boxes = boxes * np.array([win_h / img_shape[0], win_w / img_shape[1]] * 2, np.float32)
    return canvas, boxes, labels


def augment_sample(image, boxes_px, labels, img_shape, rng, random_crop=True, scale_jitter=None):
    """The training augmentation of one image -> (HWC float32 RGB 0-255 at img_shape, boxes (N, 4)
    normalised (y1, x1, y2, x2) not yet clipped, labels (N,)): IoU crop, resize, flip, colour
    jitter, drawing from `rng` in that order. With `scale_jitter` (a ScaleJitter) instead of the
    IoU crop and resize: jittered resize, crop, flip, colour jitter, padding. What the network is
    trained on, before normalisation and anchor matching (also what nasfpn/data/browse.py draws)."""
    boxes_px = np.asarray(boxes_px, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int32).reshape(-1)
    if scale_jitter is not None:
        return _augment_jittered(image, boxes_px, labels, tuple(map(int, img_shape)), rng, scale_jitter)
    if random_crop and len(boxes_px):
        image, boxes_px, labels = random_iou_crop(image, boxes_px, labels, rng)
    height, width = image.shape[:2]
    image = cv2.resize(image, (int(img_shape[1]), int(img_shape[0])), interpolation=cv2.INTER_LINEAR)
    boxes = boxes_px / np.array([height, width, height, width], np.float32)
    if rng.random() < 0.5:
        image, boxes = horizontal_flip(image, boxes)
    return color_jitter(image, rng), boxes, labels


def train_transform(image, boxes_px, labels, img_shape, rng, matcher, random_crop=True, scale_jitter=None):
    """The training transform for one image -> (CHW float32, loc, label, num_match)
    (docs/conventions.md#data-transforms).

    boxes_px: (N, 4) (y1, x1, y2, x2) pixels; labels: (N,) class indices >= 1.
    random_crop=False skips the IoU crop (flip and colour jitter stay); a ScaleJitter replaces it.
    """
    image, boxes, labels = augment_sample(image, boxes_px, labels, img_shape, rng, random_crop, scale_jitter)
    loc, label, num_match = matcher.encode(np.clip(boxes, 0, 1).astype(np.float32), labels)
    return normalize_chw(image), loc, label, num_match
