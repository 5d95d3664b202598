"""Training and inference transforms (nasfpn/data/transforms.py) against references written here, with
fixed or scripted random streams: decode, normalise, colour jitter, flip, the IoU crop."""

import cv2
import numpy as np
import pytest

from nasfpn.ops.boxes import AnchorMatcher, Anchors
from nasfpn.data.transforms import (
    CROP_MIN_IOUS,
    ImageDecodeError,
    color_jitter,
    decode_image,
    horizontal_flip,
    normalize_chw,
    preprocess_image,
    random_iou_crop,
    train_transform,
)
from nasfpn.core.errors import UserError
from tests.conftest import TINY, make_config


# Training/inference transforms against references written here, with fixed random streams.

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def test_normalize_and_preprocess_match_the_formula():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    expected = ((image.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    out = normalize_chw(image)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)
    resized = cv2.resize(image, (96, 64), interpolation=cv2.INTER_LINEAR)  # cv2 takes (W, H)
    np.testing.assert_array_equal(
        preprocess_image(image, (64, 96)), ((resized.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    )


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
            kept = [
                [max(b[0], y1) - y1, max(b[1], x1) - x1, min(b[2], y2) - y1, min(b[3], x2) - x1]
                for b, keep in zip(boxes, inside)
                if keep
            ]
            return (y1, x1, y2, x2), np.array(kept, np.float32), np.array(inside)


def test_random_iou_crop_matches_reference():
    image = np.arange(120 * 90 * 3, dtype=np.uint32).reshape(120, 90, 3).astype(np.uint8)
    boxes = np.array([[10, 5, 60, 40], [50, 30, 110, 85], [0, 0, 120, 90], [100, 70, 118, 88]], np.float32)
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


# Decoding from every source type and its errors, the flip, colour-jitter defaults and the order of
# the training transform's random draws, against references written here.


@pytest.fixture(scope="module")
def rgb():
    image = np.zeros((12, 20, 3), np.uint8)
    image[..., 0] = 200  # red
    image[:, :5, 2] = 90  # some blue on the left
    image[3:6, 8:11] = (10, 250, 30)
    return image


def test_decode_from_path_bytes_bytearray_and_array_gives_rgb(rgb, tmp_path):
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    path = tmp_path / "im.png"
    path.write_bytes(png.tobytes())
    for source in (str(path), png.tobytes(), bytearray(png.tobytes()), png.reshape(-1)):
        np.testing.assert_array_equal(decode_image(source), rgb)


def test_decode_errors_name_the_source(tmp_path):
    assert issubclass(ImageDecodeError, UserError)
    missing = tmp_path / "none.jpg"
    with pytest.raises(ImageDecodeError, match=f"^{missing}: cannot read \\(No such file or directory\\)$"):
        decode_image(str(missing))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=f"^{junk}: not a decodable image$"):
        decode_image(str(junk))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=f"^{empty}: not a decodable image$"):
        decode_image(str(empty))
    for data in (b"", b"junk", bytearray(b"junk")):
        with pytest.raises(ImageDecodeError, match="^image bytes: not a decodable image$"):
            decode_image(data)


def test_flip_mirrors_image_and_boxes_without_touching_the_input(rgb):
    boxes = np.array([[0.1, 0.2, 0.5, 0.45], [0.0, 0.0, 1.0, 1.0]], np.float32)
    before = boxes.copy()
    image, flipped = horizontal_flip(rgb, boxes)
    np.testing.assert_array_equal(image, rgb[:, ::-1])
    np.testing.assert_allclose(flipped, [[0.1, 0.55, 0.5, 0.8], [0.0, 0.0, 1.0, 1.0]], atol=1e-7)
    np.testing.assert_array_equal(boxes, before)


def test_color_jitter_defaults_are_0_4_and_output_is_clipped_float32(rgb):
    for seed in range(4):
        default = color_jitter(rgb, np.random.default_rng(seed))
        explicit = color_jitter(rgb, np.random.default_rng(seed), 0.4, 0.4, 0.4)
        np.testing.assert_array_equal(default, explicit)
        assert default.dtype == np.float32 and default.min() >= 0 and default.max() <= 255
    bright = np.full((4, 4, 3), 250, np.uint8)
    out = color_jitter(bright, np.random.default_rng(0), brightness=0.5, contrast=0.0, saturation=0.0)
    draws = np.random.default_rng(0)  # the same stream: the op order, then one factor per op
    factors = {int(k): draws.uniform(*((0.5, 1.5) if k == 0 else (1.0, 1.0))) for k in draws.permutation(3)}
    np.testing.assert_allclose(out, min(250 * factors[0], 255.0), rtol=1e-6)
    assert color_jitter(rgb, np.random.default_rng(1), 0, 0, 0).tolist() == rgb.astype(np.float32).tolist()


@pytest.fixture(scope="module")
def matcher():
    cfg = make_config(*TINY)
    return AnchorMatcher(Anchors(cfg.anchors.spec(cfg.model.img_shape)))


def reference_no_crop(image, boxes_px, labels, img_shape, rng, matcher):
    """Without the crop: resize, normalise boxes, flip if rng.random() < 0.5, jitter, clip, match."""
    h, w = image.shape[:2]
    resized = cv2.resize(image, (img_shape[1], img_shape[0]), interpolation=cv2.INTER_LINEAR)
    boxes = np.asarray(boxes_px, np.float32) / np.array([h, w, h, w], np.float32)
    if rng.random() < 0.5:
        resized, boxes = resized[:, ::-1].copy(), boxes.copy()
        boxes[:, [1, 3]] = 1 - boxes[:, [3, 1]]
    jittered = color_jitter(resized, rng)
    loc, label, num = matcher.encode(np.clip(boxes, 0, 1), np.asarray(labels, np.int32))
    return normalize_chw(jittered), loc, label, num


def test_train_transform_without_crop_follows_the_reference(matcher):
    image = np.random.default_rng(3).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    boxes = [[5, 10, 60, 50], [40, -8, 95, 30]]  # the second pokes outside: clipped before matching
    flips = set()
    for seed in range(6):
        out = train_transform(
            image, boxes, [1, 2], (128, 128), np.random.default_rng(seed), matcher, random_crop=False
        )
        ref_rng = np.random.default_rng(seed)
        flips.add(bool(np.random.default_rng(seed).random() < 0.5))
        ref = reference_no_crop(image, boxes, [1, 2], (128, 128), ref_rng, matcher)
        assert out[0].shape == (3, 128, 128) and out[0].dtype == np.float32
        for got, want in zip(out, ref):
            np.testing.assert_allclose(got, want, atol=1e-4)
    assert flips == {True, False}


def test_no_boxes_skip_the_crop_draws(matcher):
    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    empty = np.zeros((0, 4), np.float32)
    with_crop = train_transform(image, empty, [], (128, 128), np.random.default_rng(7), matcher)
    without = train_transform(
        image, empty, [], (128, 128), np.random.default_rng(7), matcher, random_crop=False
    )
    for a, b in zip(with_crop, without):
        np.testing.assert_array_equal(a, b)
    assert with_crop[3].tolist() == [0] and not with_crop[2].any()


def test_crop_is_on_by_default_and_the_output_has_img_shape(matcher):
    image = np.random.default_rng(5).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    boxes, labels = [[10, 10, 50, 60], [40, 30, 90, 75]], [1, 2]
    differs = False
    for seed in range(8):
        default = train_transform(image, boxes, labels, (128, 256), np.random.default_rng(seed), matcher)
        crop = train_transform(
            image, boxes, labels, (128, 256), np.random.default_rng(seed), matcher, random_crop=True
        )
        plain = train_transform(
            image, boxes, labels, (128, 256), np.random.default_rng(seed), matcher, random_crop=False
        )
        assert default[0].shape == (3, 128, 256)
        np.testing.assert_array_equal(default[0], crop[0])
        differs |= not np.array_equal(default[0], plain[0])
    assert differs


# The IoU crop at its exact boundaries, with the random draws scripted so a crop lands exactly
# where random ones never do: an IoU equal to the minimum (accepted), box centres exactly on each
# crop edge (not inside), a crop with no centre inside (the next trial, not a new minimum IoU).


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
    boxes = np.array([[0, 0, 50, 50]], np.float32)  # IoU with the crop (0, 0, 50, 100): 2500 / 5000
    draws = ScriptedDraws(pick_min_iou(0.5), *crop_at(0, 0, 50, 100))
    image, kept, labels = random_iou_crop(IMAGE, boxes, np.array([3], np.int32), draws)
    assert not draws.draws
    np.testing.assert_array_equal(image, IMAGE[0:50, 0:100])
    np.testing.assert_array_equal(kept, boxes)
    assert kept.dtype == np.float32 and labels.tolist() == [3]


def test_box_centres_exactly_on_a_crop_edge_are_not_inside():
    # crop (20, 20, 80, 80); one box centred inside, one centred on each edge
    boxes = np.array(
        [
            [30, 30, 70, 70],  # centre (50, 50): kept
            [10, 40, 30, 60],  # centre y = 20, the top edge
            [40, 10, 60, 30],  # centre x = 20, the left edge
            [70, 40, 90, 60],  # centre y = 80, the bottom edge
            [40, 70, 60, 90],
        ],  # centre x = 80, the right edge
        np.float32,
    )
    draws = ScriptedDraws(pick_min_iou(0.1), *crop_at(20, 20, 60, 60))
    image, kept, labels = random_iou_crop(IMAGE, boxes, np.arange(1, 6, dtype=np.int32), draws)
    assert image.shape == (60, 60, 3)
    assert labels.tolist() == [1]
    np.testing.assert_array_equal(kept, [[10, 10, 50, 50]])  # shifted by the crop's corner


def test_a_crop_without_a_box_centre_inside_tries_again_with_the_same_minimum():
    boxes = np.array([[0, 0, 60, 60]], np.float32)  # centre (30, 30)
    draws = ScriptedDraws(
        pick_min_iou(0.1),
        *crop_at(40, 40, 60, 60),  # IoU 400 / 6800 < 0.1: rejected by IoU
        *crop_at(32, 0, 60, 60),  # IoU 0.33 but the centre (30, 30) is outside
        *crop_at(0, 0, 50, 50),
    )  # accepted
    image, kept, labels = random_iou_crop(IMAGE, boxes, np.array([2], np.int32), draws)
    assert not draws.draws and image.shape == (50, 50, 3)
    np.testing.assert_array_equal(kept, [[0, 0, 50, 50]])


def test_a_script_that_runs_out_fails_loudly():
    """The stand-in's own check: a crop that is rejected asks for more draws than scripted."""
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    with pytest.raises(AssertionError, match="ran out"):
        random_iou_crop(
            IMAGE, boxes, np.array([1], np.int32), ScriptedDraws(pick_min_iou(0.9), *crop_at(50, 50, 50, 50))
        )
