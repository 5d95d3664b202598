"""Scale jitter (the short recipe's augmentation, docs/conventions.md#data-transforms): the resize
at both ends of the factor range, crops at each edge of the resized image, boxes cut below the
minimum size, an image smaller than the crop, the random stream per (seed, epoch, image), the
browser drawing what training sees, and the bad settings refused by key."""

import cv2
import numpy as np
import pytest

from nasfpn.ops.boxes import AnchorMatcher, Anchors
from nasfpn.config.flat import ConfigError
from nasfpn.data.browse import augmented_view
from nasfpn.data.pipeline import TrainSampleTransform, augmentation_rng
from nasfpn.data.transforms import (
    MEAN_RGB,
    ScaleJitter,
    augment_sample,
    jittered_size,
    random_scale_jitter,
    scale_jitter_crop,
)
from tests.conftest import TINY, make_config

CROP = (128, 128)


def picture(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def reference_window(image, new_h, new_w, top, left):
    """What the jitter must cut: OpenCV's bilinear resize to (new_h, new_w), then the crop."""
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return resized[top : top + CROP[0], left : left + CROP[1]]


@pytest.mark.parametrize(
    "factor, expected_size",
    [
        # 300x200 into 128x128 keeping the aspect ratio: scale = factor x min(128/300, 128/200)
        # 0.8 x 0.42667 = 0.34133: 300 -> 102.4 -> 102, 200 -> 68.27 -> 68 (smaller than the crop)
        (0.8, (102, 68)),
        # 1.2 x 0.42667 = 0.512: 300 -> 153.6 -> 154, 200 -> 102.4 -> 102 (taller than the crop)
        (1.2, (154, 102)),
    ],
)
def test_the_factor_at_min_and_at_max_resizes_keeping_the_aspect_ratio(factor, expected_size):
    image = picture(300, 200)
    assert jittered_size((300, 200), CROP, factor) == expected_size
    boxes = np.array([[30, 20, 270, 180]], np.float32)
    window, got, labels = scale_jitter_crop(image, boxes, np.array([3]), CROP, factor, 0, 0, 1.0)
    new_h, new_w = expected_size
    np.testing.assert_array_equal(window, reference_window(image, new_h, new_w, 0, 0))
    sy, sx = new_h / 300, new_w / 200
    expected = np.array([[30 * sy, 20 * sx, min(270 * sy, 128), 180 * sx]], np.float32)
    # float32 products of numbers < 300: within 2 ulp of 256 (3e-5) of the float64 ones
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert labels.tolist() == [3]


@pytest.mark.parametrize("top, left", [(0, 0), (26, 0), (0, 26), (26, 26)])
def test_crops_touching_each_edge_of_the_resized_image(top, left):
    # 320x320 at factor 1.2 -> 153.6 -> 154 square: offsets 0..26 on both axes; a box in each
    # corner of the image; the window's edge cuts the corner boxes it reaches.
    image = picture(320, 320, seed=1)
    corners = np.array(
        [[0, 0, 40, 40], [0, 280, 40, 320], [280, 0, 320, 40], [280, 280, 320, 320]], np.float32
    )
    window, boxes, labels = scale_jitter_crop(image, corners, np.arange(1, 5), CROP, 1.2, top, left, 1.0)
    np.testing.assert_array_equal(window, reference_window(image, 154, 154, top, left))
    scale = 154 / 320
    reference = np.clip(corners * scale - [top, left, top, left], 0, 128)
    sides = reference[:, 2:] - reference[:, :2]
    kept = (sides >= 1).all(axis=1)
    np.testing.assert_allclose(boxes, reference[kept], rtol=0, atol=1e-4)  # as above: 2 ulp of 256
    assert labels.tolist() == (np.arange(1, 5)[kept]).tolist()
    # Each corner box is 19.25 px at this scale and 134.75 px from the opposite ones: only the box
    # in the corner the window touches is left (the others are cut to zero height or width).
    assert labels.tolist() == [1 + (top == 26) * 2 + (left == 26)]
    with pytest.raises(ValueError, match=r"crop offset \(27, 0\) outside the 154x154 resized image"):
        scale_jitter_crop(image, corners, np.arange(1, 5), CROP, 1.2, 27, 0, 1.0)


def test_a_box_cut_below_the_minimum_size_is_dropped():
    # factor 1 on 256x256: scale 0.5 -> 128x128, the window is all of it. Halved, box A spans
    # x 127.5..129 and is cut at 128 to 0.5 px wide; B is 1.5 px high; C is 30 px square.
    image = picture(256, 256, seed=2)
    boxes = np.array([[20, 255, 40, 258], [100, 100, 103, 140], [0, 0, 60, 60]], np.float32)
    labels = np.array([1, 2, 3])
    _, kept, kept_labels = scale_jitter_crop(image, boxes, labels, CROP, 1.0, 0, 0, 1.0)
    assert kept_labels.tolist() == [2, 3]
    np.testing.assert_array_equal(kept, np.array([[50, 50, 51.5, 70], [0, 0, 30, 30]], np.float32))
    assert scale_jitter_crop(image, boxes, labels, CROP, 1.0, 0, 0, 2.0)[2].tolist() == [3]
    assert scale_jitter_crop(image, boxes, labels, CROP, 1.0, 0, 0, 0.25)[2].tolist() == [1, 2, 3]


def test_an_image_smaller_than_the_crop_is_padded_with_the_mean_colour():
    image = picture(100, 60, seed=3)  # factor 0.5: 0.5 x min(1.28, 2.13) = 0.64 -> 64 x 38
    boxes = np.array([[10, 5, 90, 55]], np.float32)
    rng = augmentation_rng(1, 7, 0)
    out, got, labels = augment_sample(image, boxes, [2], CROP, rng, scale_jitter=ScaleJitter(0.5, 0.5, 1.0))
    assert out.shape == (128, 128, 3) and out.dtype == np.float32
    # Padding goes on after the colour jitter: exactly the mean colour (0 once normalised)
    np.testing.assert_array_equal(out[64:], np.broadcast_to(MEAN_RGB, (64, 128, 3)))
    np.testing.assert_array_equal(out[:, 38:], np.broadcast_to(MEAN_RGB, (128, 90, 3)))
    assert not np.array_equal(out[:64, :38], np.broadcast_to(MEAN_RGB, (64, 38, 3)))
    # Boxes are normalised by the padded 128x128 input, mirrored inside the 38 px wide picture
    # when the flip was drawn (the same stream replayed: factor, two offsets, then the flip)
    replay = augmentation_rng(1, 7, 0)
    replay.uniform(0.5, 0.5), replay.integers(1), replay.integers(1)
    flipped = replay.random() < 0.5
    y1, x1, y2, x2 = 10 * 0.64, 5 * 38 / 60, 90 * 0.64, 55 * 38 / 60
    x1, x2 = (38 - x2, 38 - x1) if flipped else (x1, x2)
    # atol: a few float32 ops on values <= 1
    np.testing.assert_allclose(got, np.array([[y1, x1, y2, x2]]) / 128, rtol=0, atol=1e-6)
    assert labels.tolist() == [2]


def test_the_draws_are_the_factor_then_the_offsets():
    image = picture(300, 500, seed=4)
    boxes = np.array([[50, 50, 250, 450]], np.float32)
    jitter = ScaleJitter(0.8, 1.2, 1.0)
    window, got, _ = random_scale_jitter(image, boxes, np.array([1]), CROP, np.random.default_rng(5), jitter)
    replay = np.random.default_rng(5)
    factor = replay.uniform(0.8, 1.2)
    new_h, new_w = jittered_size((300, 500), CROP, factor)
    top, left = replay.integers(max(new_h - 128, 0) + 1), replay.integers(max(new_w - 128, 0) + 1)
    expected = scale_jitter_crop(image, boxes, np.array([1]), CROP, factor, int(top), int(left), 1.0)
    np.testing.assert_array_equal(window, expected[0])
    np.testing.assert_array_equal(got, expected[1])


@pytest.fixture(scope="module")
def jitter_config():
    return make_config(
        *TINY,
        "--num_classes=4",
        "--scale_jitter=true",
        "--scale_jitter_min=0.5",
        "--scale_jitter_max=1.5",
        "--train_random_crop=false",
    )


def _sample(cfg, matcher, encoded, rows, seed, img_id, epoch):
    transform = TrainSampleTransform(cfg.model.img_shape, cfg.augmentation, matcher, seed, epoch)
    return transform(np.array([img_id], np.int32), np.frombuffer(encoded, np.uint8), rows)


def test_the_stream_is_a_function_of_seed_epoch_and_image(jitter_config):
    cfg = jitter_config
    matcher = AnchorMatcher(
        Anchors(cfg.anchors.spec(cfg.model.img_shape)), cfg.match_threshold, cfg.prior_scaling
    )
    encoded = cv2.imencode(".png", picture(180, 240, seed=6))[1].tobytes()
    rows = np.array([[20, 30, 150, 200, 1], [60, 10, 120, 90, 2]], np.int32)
    first = _sample(cfg, matcher, encoded, rows, 1, 9, 3)
    again = _sample(cfg, matcher, encoded, rows, 1, 9, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for other in ((2, 9, 3), (1, 10, 3), (1, 9, 4)):  # seed, image, epoch: each changes the draw
        assert not np.array_equal(_sample(cfg, matcher, encoded, rows, *other)[0], first[0]), other
    # The browser draws exactly what training is given (before normalisation and matching)
    image, boxes, labels = augmented_view(
        cfg.augmentation, cfg.model.img_shape, cfg.seed, 9, encoded, rows, 3
    )
    planes = [(image[..., c] - MEAN_RGB[c]) for c in range(3)]
    assert image.shape == (128, 128, 3)
    np.testing.assert_allclose(
        first[0] * np.array([58.395, 57.12, 57.375], np.float32)[:, None, None],
        np.stack(planes),
        rtol=0,
        atol=1e-3,
    )  # (x - m) / s * s: 2 ulp of 255
    loc, label, num_match = matcher.encode(boxes, labels)
    np.testing.assert_array_equal(label, first[2])
    np.testing.assert_array_equal(num_match, first[3])


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ("--scale_jitter_min=1.3",),
            "--scale_jitter_min=1.3 is above --scale_jitter_max=1.2; expected min <= max",
        ),
        (
            ("--img_shape=[640,600]",),
            "--img_shape: the scale-jitter crop size [640, 600] (--scale_jitter=true) "
            "must be divisible by the largest step (128)",
        ),
        (("--scale_jitter_min=0",), "--scale_jitter_min: expected > 0, got 0.0"),
        (("--min_box_size=-1",), "--min_box_size: expected >= 0, got -1.0"),
    ],
)
def test_bad_jitter_settings_name_their_keys(options, message):
    with pytest.raises(ConfigError) as raised:
        make_config("--scale_jitter=true", *options)
    assert str(raised.value) == message
