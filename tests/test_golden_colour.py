"""Colour order: a one-colour image encoded as PNG and JPEG must reach the network as RGB, normalised
with the RGB mean/std, through every preprocessing path (eval, training, the 310 twin).

The images are encoded with Pillow (installed with matplotlib), which takes RGB arrays, so the
test does not share OpenCV's BGR convention with the code under test.
"""

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY, make_config

COLOUR = (200, 30, 90)  # R, G, B: every channel different, far apart
MEAN = np.array([123.675, 116.28, 103.53])  # per RGB channel, 0-255 scale
STD = np.array([58.395, 57.12, 57.375])
# PNG is lossless; a flat JPEG comes back within a couple of levels (YCbCr rounding). A channel
# mix-up moves a value by >= 60 levels.
JPEG_LEVELS = 2.0
SIZE = (40, 56)  # (H, W) of the source image
IMG_SHAPE = (128, 128)


def encoded(fmt, colour=COLOUR):
    buffer = io.BytesIO()
    Image.fromarray(np.full(SIZE + (3,), colour, np.uint8), "RGB").save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


FORMATS = [("PNG", 0.0), ("JPEG", JPEG_LEVELS)]


def expected_planes(colour=COLOUR):
    return (np.asarray(colour, np.float64) - MEAN) / STD


def assert_normalised_colour(chw, levels, colour=COLOUR):
    """Each plane of a CHW image is flat and equals (v_c - mean_c) / std_c."""
    chw = np.asarray(chw, np.float64)
    assert chw.shape[0] == 3
    tolerance = levels / STD + 1e-5  # 1e-5: float32 rounding of the normalisation
    for c in range(3):
        plane = chw[c]
        assert np.abs(plane - expected_planes(colour)[c]).max() <= tolerance[c], (
            c,
            plane.min(),
            plane.max(),
            expected_planes(colour)[c],
        )


@pytest.mark.parametrize("fmt, levels", FORMATS)
def test_decode_returns_rgb(fmt, levels):
    from nasfpn.data.transforms import decode_image

    rgb = decode_image(encoded(fmt))
    assert rgb.shape == SIZE + (3,) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - COLOUR).max() <= levels


@pytest.mark.parametrize("fmt, levels", FORMATS)
def test_decode_from_a_file_returns_rgb(fmt, levels, tmp_path):
    from nasfpn.data.transforms import decode_image

    path = tmp_path / f"flat.{fmt.lower()}"
    path.write_bytes(encoded(fmt))
    assert np.abs(decode_image(str(path)).astype(int) - COLOUR).max() <= levels


@pytest.mark.parametrize("fmt, levels", FORMATS)
def test_inference_preprocessing_normalises_rgb(fmt, levels):
    from nasfpn.data.transforms import decode_image, preprocess_image

    chw = preprocess_image(decode_image(encoded(fmt)), IMG_SHAPE)
    assert chw.shape == (3,) + IMG_SHAPE and chw.dtype == np.float32
    assert_normalised_colour(chw, levels)


@pytest.mark.parametrize("fmt, levels", FORMATS)
def test_eval_pipeline_sample_normalises_rgb(fmt, levels):
    """The per-record function of the eval MindDataset (record bytes in, CHW + original size out)."""
    from nasfpn.data.pipeline import EvalSampleTransform

    chw, hw = EvalSampleTransform(make_config(*TINY).model.img_shape)(np.frombuffer(encoded(fmt), np.uint8))
    np.testing.assert_array_equal(hw, SIZE)
    assert_normalised_colour(chw, levels)


def _recovered_pixels(chw):
    """Undo the normalisation (RGB mean/std) -> the per-channel value of a flat image."""
    values = np.asarray(chw, np.float64).reshape(3, -1)
    assert np.ptp(values, axis=1).max() < 1e-3  # still one colour
    return values.mean(axis=1) * STD + MEAN


@pytest.mark.parametrize("fmt, levels", FORMATS)
@pytest.mark.parametrize("visit", range(4))
def test_training_sample_keeps_rgb_under_any_jitter(fmt, levels, visit):
    """Brightness, contrast and saturation each map every channel of a pixel v -> f * v + k with
    one f and one k, so channel differences are all scaled by the same factor: the ratio
    (R - G) / (G - B) survives any jitter (the colour below stays clear of 0 and 255, so nothing
    clips). Swapping R and B changes it from -2.25 to -0.44."""
    from nasfpn.data.pipeline import TrainSampleTransform

    colour = (140, 95, 115)
    cfg = make_config(*TINY)
    from nasfpn.ops.boxes import AnchorMatcher, Anchors

    matcher = AnchorMatcher(
        Anchors(cfg.anchors.spec(cfg.model.img_shape)), cfg.match_threshold, cfg.prior_scaling
    )
    transform = TrainSampleTransform(cfg.model.img_shape, cfg.augmentation, matcher, seed=visit, epoch=0)
    annotation = np.array([[5, 5, 30, 40, 1]], np.int32)  # (y1, x1, y2, x2, class) in pixels
    chw, _, _, num_match = transform(
        np.array([7], np.int32), np.frombuffer(encoded(fmt, colour), np.uint8), annotation
    )
    assert chw.shape == (3,) + IMG_SHAPE and int(num_match[0]) > 0
    r, g, b = _recovered_pixels(chw)
    expected = (colour[0] - colour[1]) / (colour[1] - colour[2])
    # A JPEG's +-2 levels on differences of 20-45 levels move the ratio by up to ~25%; the swap
    # moves it by a factor of five.
    assert (r - g) / (g - b) == pytest.approx(expected, rel=0.25 if levels else 1e-3)
    assert r > b > g


def test_310_twin_writes_what_the_model_saw_from_rgb(tmp_path):
    """The twin's own decode + preprocess: a real cell returning the per-channel means as scores,
    read back from the .bin file the twin writes."""
    import mindspore.nn as nn
    import mindspore.ops as ops
    from nasfpn.deploy.app310_twin import run_app
    from nasfpn.inference.runtimes import open_runtime

    class ChannelMeans(nn.Cell):
        def construct(self, images):
            means = images.mean(axis=(2, 3)).reshape(1, 1, 3)
            return ops.concat((means, means[:, :, :1]), axis=-1), means

    images = tmp_path / "images"
    images.mkdir()
    (images / "flat_png.png").write_bytes(encoded("PNG"))
    (images / "flat_jpg.jpg").write_bytes(encoded("JPEG"))
    result = run_app(
        open_runtime(ChannelMeans()),
        str(images),
        IMG_SHAPE,
        str(tmp_path / "result_Files"),
        str(tmp_path / "time_Result"),
        progress=False,
    )
    assert result["count"] == 2
    for stem, levels in (("flat_png", 0.0), ("flat_jpg", JPEG_LEVELS)):
        scores = np.fromfile(tmp_path / "result_Files" / f"{stem}_1.bin", np.float32)
        np.testing.assert_allclose(scores, expected_planes(), rtol=0, atol=levels / STD.min() + 1e-5)
