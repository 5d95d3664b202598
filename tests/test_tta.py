"""Test-time augmentation: the flip view is the mirror of the plain view (exactly, on a real TINY
network), extra scales reuse the detector with their own anchors, and an exported model's single
input size is refused for scales by name."""

import numpy as np
import pytest

from tests.conftest import TINY, make_config

ARGS = (*TINY, "--num_classes=4")


@pytest.fixture(scope="module")
def network_runtime():
    import mindspore as ms
    from nasfpn.inference.build import build_inference_network
    from nasfpn.inference.runtimes import open_runtime

    ms.set_seed(3)
    cfg = make_config(*ARGS)
    return cfg, open_runtime(build_inference_network(cfg))


def _image(seed=0):
    return np.random.default_rng(seed).normal(size=(1, 3, 128, 128)).astype(np.float32)


def test_mirror_boxes_maps_x_to_one_minus_x():
    from nasfpn.inference.tta import mirror_boxes

    boxes = np.array([[0.1, 0.2, 0.5, 0.3]])
    np.testing.assert_array_equal(mirror_boxes(boxes), [[0.1, 0.7, 0.5, 0.8]])


@pytest.mark.slow
def test_flip_view_of_a_mirrored_image_is_the_mirrored_plain_view(network_runtime):
    """TTA of the mirrored image has the same two views as TTA of the image, swapped, with boxes
    mirrored: x -> 1 - x is exact in float32 for the decoded boxes (1 - (1 - x) may round, so the
    comparison is of the mirrored image's plain view against the image's flip view, both computed
    by the same network on the same pixels)."""
    from nasfpn.inference.tta import TtaRuntime, mirror_boxes

    cfg, runtime = network_runtime
    tta = TtaRuntime(runtime, flip=True)
    image = _image()
    mirrored = np.ascontiguousarray(image[..., ::-1])
    boxes, scores = tta(image)
    boxes_m, scores_m = tta(mirrored)
    anchors = boxes.shape[1] // 2
    assert tta.views() == 2 and boxes.shape[1] == 2 * anchors
    # the mirrored image's plain view is the network on the same pixels as the image's flip view
    np.testing.assert_array_equal(scores_m[:, :anchors], scores[:, anchors:])
    np.testing.assert_array_equal(mirror_boxes(boxes_m[:, :anchors]), boxes[:, anchors:])
    # and the plain view is the runtime itself
    plain_boxes, plain_scores = runtime(image)
    np.testing.assert_array_equal(boxes[:, :anchors], plain_boxes)
    np.testing.assert_array_equal(scores[:, :anchors], plain_scores)


@pytest.mark.slow
def test_symmetric_image_gives_mirrored_boxes(network_runtime):
    """An image equal to its mirror: the flip view's boxes are the plain view's, mirrored."""
    from nasfpn.inference.tta import TtaRuntime, mirror_boxes

    cfg, runtime = network_runtime
    half = _image(1)[..., :64]
    symmetric = np.ascontiguousarray(np.concatenate([half, half[..., ::-1]], axis=-1))
    boxes, scores = TtaRuntime(runtime, flip=True)(symmetric)
    anchors = boxes.shape[1] // 2
    np.testing.assert_array_equal(scores[:, anchors:], scores[:, :anchors])
    np.testing.assert_array_equal(boxes[:, anchors:], mirror_boxes(boxes[:, :anchors]))


@pytest.mark.slow
def test_scales_reuse_the_detector_with_their_own_anchors(network_runtime):
    from nasfpn.inference.tta import with_test_time_augmentation

    cfg, runtime = network_runtime
    tta = with_test_time_augmentation(runtime, False, [1.0, 2.0], cfg.model.img_shape, cfg.anchors)
    boxes, scores = tta(_image())
    plain = runtime(_image())[0].shape[1]
    # 128x128 has 9 * (16^2 + 8^2 + 4^2 + 2^2 + 1) anchors; 256x256 four times the cells
    assert plain == 9 * (256 + 64 + 16 + 4 + 1)
    assert boxes.shape[1] == 2 * plain + 9 * (1024 + 256 + 64 + 16 + 4)
    # scale 1.0 is the same input size: the same network on the same pixels
    np.testing.assert_array_equal(boxes[:, plain : 2 * plain], boxes[:, :plain])
    np.testing.assert_array_equal(scores[:, plain : 2 * plain], scores[:, :plain])


def test_scaled_shape_rounds_to_the_largest_step():
    from nasfpn.inference.tta import scaled_shape

    assert scaled_shape((640, 640), 1.25, 128) == (768, 768)  # 800 -> nearest multiple 768
    assert scaled_shape((640, 512), 0.6, 128) == (384, 256)  # 384, 307.2 -> 256
    assert scaled_shape((128, 128), 0.1, 128) == (128, 128)  # never below one step


def test_no_tta_keeps_the_runtime(network_runtime):
    from nasfpn.inference.tta import with_test_time_augmentation

    cfg, runtime = network_runtime
    assert (
        with_test_time_augmentation(runtime, cfg.tta_flip, cfg.tta_scales, cfg.img_shape, cfg.anchors)
        is runtime
    )


def test_scales_with_an_exported_model_are_refused(network_runtime, tmp_path):
    from nasfpn.core.errors import UserError
    from nasfpn.inference.tta import with_test_time_augmentation

    class Exported:  # what open_runtime returns for a file: no .cell
        name, input_shape, path = "onnxruntime", [1, 3, 128, 128], str(tmp_path / "m.onnx")

    cfg, _ = network_runtime
    with pytest.raises(
        UserError,
        match=r"--tta_scales=\[1.5\]: needs the network .*m.onnx has one "
        r"input size",
    ):
        with_test_time_augmentation(Exported(), False, [1.5], cfg.model.img_shape, cfg.anchors)
    with pytest.raises(UserError, match=r"--tta_scales: expected factors in \(0, 4\]"):
        with_test_time_augmentation(Exported(), False, [0.0], cfg.model.img_shape, cfg.anchors)
