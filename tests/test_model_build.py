"""How the detector is built: every model option reaches its cell, the defaults of RetinaNetNasFpn
are the release network, and every BatchNorm / conv is made with the stated settings.

The options network below differs from the release in every key, so an option that is dropped on
the way (and silently replaced by a default) changes a shape, a count or a value checked here.
"""
import math

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from src.model import build_detector
from src.model.detector import RetinaNetNasFpn
from tests.conftest import TINY, make_config

P = 0.01          # cls_prior_probability
NUM_CLASSES = 5
ANCHORS = 2 * 2   # 2 aspect ratios x 2 scales
MOMENTUM = 0.8   # not MindSpore's default 0.9, so a momentum not passed on shows


@pytest.fixture(scope="module")
def options_net():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = make_config(*TINY, f"--num_classes={NUM_CLASSES}", "--aspect_ratios=[1.0,2.0]",
                      "--num_scales=2", "--fpn_stages=2", "--head_convs=2", "--fpn_channels=16",
                      f"--cls_prior_probability={P}", f"--bn_momentum={MOMENTUM}")
    net = build_detector(cfg)
    return net, {p.name: p for p in net.get_parameters()}


def test_backbone_depth_18_is_built_of_basic_blocks(options_net):
    _, params = options_net
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    blocks = {n.split(".")[1] + "." + n.split(".")[2] for n in shapes if n.startswith("backbone.layer")}
    assert sorted(blocks) == [f"layer{l}.{b}" for l in range(1, 5) for b in range(2)]  # [2, 2, 2, 2]
    assert shapes["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["backbone.layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["backbone.layer2.0.conv1.weight"] == (128, 64, 3, 3)
    assert shapes["backbone.layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["backbone.layer2.0.down_sample_layer.0.weight"] == (128, 64, 1, 1)
    assert "backbone.layer1.0.down_sample_layer.0.weight" not in shapes  # 64 -> 64, stride 1
    assert not [n for n in shapes if ".conv3." in n]                       # no bottlenecks


def test_neck_has_the_configured_channels_and_stages(options_net):
    _, params = options_net
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    # ResNet-18's C3, C4, C5 have 128, 256, 512 channels
    assert [shapes[f"neck.lateral_convs.{i}.conv.weight"] for i in range(3)] == [
        (16, 128, 1, 1), (16, 256, 1, 1), (16, 512, 1, 1)]
    stages = {int(n.split(".")[2]) for n in shapes if n.startswith("neck.fpn_stages.")}
    assert stages == {0, 1}
    assert shapes["neck.fpn_stages.1.8.out_conv.features.1.weight"] == (16, 16, 3, 3)


def test_head_has_the_configured_convs_anchors_classes_and_prior_bias(options_net):
    _, params = options_net
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    for level in range(5):
        loc = sorted(n for n in shapes if n.startswith(f"head.multi_loc_layers.{level}."))
        cls = sorted(n for n in shapes if n.startswith(f"head.multi_cls_layers.{level}."))
        # 2 x (conv, ReLU) then the final conv: feats.0, feats.2, feats.4
        assert loc == [f"head.multi_loc_layers.{level}.feats.{i}.weight" for i in (0, 2, 4)]
        prefix = f"head.multi_cls_layers.{level}.feats"
        assert cls == [f"{prefix}.0.weight", f"{prefix}.2.weight", f"{prefix}.4.bias", f"{prefix}.4.weight"]
        assert shapes[loc[-1]] == (ANCHORS * 4, 16, 3, 3)
        assert shapes[f"{prefix}.4.weight"] == (ANCHORS * NUM_CLASSES, 16, 3, 3)
        bias = params[f"{prefix}.4.bias"]
        assert bias.dtype == ms.float32 and tuple(bias.shape) == (ANCHORS * NUM_CLASSES,)
        # channel k * C + c: the background column starts at 1 - p, the object classes at p
        logit = math.log((1 - P) / P)
        want = [[logit] + [-logit] * (NUM_CLASSES - 1)] * ANCHORS
        np.testing.assert_allclose(bias.asnumpy().reshape(ANCHORS, NUM_CLASSES), want, rtol=1e-6)


def test_every_batch_norm_has_the_configured_momentum_its_parts_eps_and_gamma(options_net):
    net, _ = options_net
    norms = [(name, cell) for name, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    assert len(norms) == 1 + 16 + 3 + 3 + 2 + 2 * 7  # stem, 8 blocks x 2, projections, neck
    for name, bn in norms:
        # MindSpore stores 1 - momentum: running = momentum * running + (1 - momentum) * batch
        assert bn.momentum == pytest.approx(1 - MOMENTUM), name
        assert bn.eps == pytest.approx(1e-3 if name.startswith("backbone.") else 1e-5), name
        gamma = bn.gamma.asnumpy()
        last_of_block = name.startswith("backbone.layer") and name.endswith(".bn2")
        assert (gamma == (0.0 if last_of_block else 1.0)).all(), name


def test_unknown_backbone_depth_is_refused_by_name():
    from src.model.resnet import ResNet
    with pytest.raises(ValueError, match=r"backbone_depth must be one of \[18, 34, 50, 101\], got 51"):
        ResNet(51, MOMENTUM)


def test_detector_defaults_build_the_published_network(manifest_rows):
    """RetinaNetNasFpn() with no arguments is the published network, BN momentum included."""
    net = RetinaNetNasFpn()
    ours = [(p.name, tuple(p.shape), p.requires_grad) for p in net.get_parameters()]
    assert ours == [(name[len("network."):], shape, grad) for name, shape, grad in manifest_rows]
    norms = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    assert {round(bn.momentum, 6) for bn in norms} == {round(1 - 0.997, 6)}


def test_default_config_is_the_release_network():
    cfg = make_config()
    assert (cfg.num_classes, cfg.backbone_depth, cfg.fpn_channels, cfg.fpn_stages, cfg.head_convs,
            len(cfg.aspect_ratios) * cfg.num_scales, cfg.cls_prior_probability, cfg.bn_momentum) == (
        81, 50, 256, 7, 4, 9, 0.0, 0.997)


def test_conv2d_helper_padding_stride_and_bias():
    from src.model.layers import conv2d
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = ms.Tensor(np.ones((1, 2, 8, 8), np.float32))
    padded = conv2d(2, 3, 3, stride=2, padding=1)
    assert padded.pad_mode == "pad" and padded.padding == 1 and not padded.has_bias
    out = padded(x).asnumpy()
    assert out.shape == (1, 3, 4, 4)
    # the top-left window of a ones image with one pixel of zero padding sees w[..., 1:, 1:]
    w = padded.weight.asnumpy()
    np.testing.assert_allclose(out[0, :, 0, 0], w[:, :, 1:, 1:].sum(axis=(1, 2, 3)), rtol=1e-5, atol=1e-6)
    same = conv2d(2, 3, 3, stride=2)
    assert same.pad_mode == "same" and same(ms.Tensor(np.ones((1, 2, 7, 7), np.float32))).shape == (1, 3, 4, 4)
    for padding in (None, 1):
        biased = conv2d(2, 3, 1, padding=padding, bias_init=ms.Tensor(np.array([1.0, 2.0, 3.0], np.float32)))
        assert biased.has_bias, padding
        np.testing.assert_array_equal(biased.bias.asnumpy(), [1.0, 2.0, 3.0])
