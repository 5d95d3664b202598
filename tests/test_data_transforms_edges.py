"""Decoding from every source type and its errors, the flip, colour-jitter defaults and the order of
the training transform's random draws, against references written here."""
import cv2
import numpy as np
import pytest

from src.boxes import AnchorMatcher, Anchors, AnchorSpec
from src.data.transforms import (ImageDecodeError, color_jitter, decode_image, horizontal_flip,
                                 normalize_chw, train_transform)
from src.errors import UserError
from tests.conftest import TINY, make_config


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
    factors = {int(k): draws.uniform(*((0.5, 1.5) if k == 0 else (1.0, 1.0)))
               for k in draws.permutation(3)}
    np.testing.assert_allclose(out, min(250 * factors[0], 255.0), rtol=1e-6)
    assert color_jitter(rgb, np.random.default_rng(1), 0, 0, 0).tolist() == rgb.astype(np.float32).tolist()


@pytest.fixture(scope="module")
def matcher():
    return AnchorMatcher(Anchors(AnchorSpec.from_config(make_config(*TINY))))


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
        out = train_transform(image, boxes, [1, 2], (128, 128), np.random.default_rng(seed), matcher,
                              random_crop=False)
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
    without = train_transform(image, empty, [], (128, 128), np.random.default_rng(7), matcher,
                              random_crop=False)
    for a, b in zip(with_crop, without):
        np.testing.assert_array_equal(a, b)
    assert with_crop[3].tolist() == [0] and not with_crop[2].any()


def test_crop_is_on_by_default_and_the_output_has_img_shape(matcher):
    image = np.random.default_rng(5).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    boxes, labels = [[10, 10, 50, 60], [40, 30, 90, 75]], [1, 2]
    differs = False
    for seed in range(8):
        default = train_transform(image, boxes, labels, (128, 256), np.random.default_rng(seed), matcher)
        crop = train_transform(image, boxes, labels, (128, 256), np.random.default_rng(seed), matcher,
                               random_crop=True)
        plain = train_transform(image, boxes, labels, (128, 256), np.random.default_rng(seed), matcher,
                                random_crop=False)
        assert default[0].shape == (3, 128, 256)
        np.testing.assert_array_equal(default[0], crop[0])
        differs |= not np.array_equal(default[0], plain[0])
    assert differs
