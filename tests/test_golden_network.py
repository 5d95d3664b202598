"""Golden values: the network's cells against an independent numpy reference written here.

Every weight and BN statistic is random (fixed seed) and the cells run in eval mode, so a wrong
input, a swapped operand, a wrong padding or a wrong reshape order changes the numbers. The
reference is typed from the architecture description (docs: README "Architecture"; Ghiasi et al.
2019, fig. 7) and reads parameters only by their checkpoint names; it does not import the wiring
tables of nasfpn/model.

Tolerances: MindSpore computes in float32, the reference in float64. A float32 dot product of
K terms is off by about sqrt(K) * 6e-8 relative to the size of its terms; across the ~60 layers of
the detector that stays below 1e-5 of the output's magnitude (measured: about 1e-6 here). We allow
1e-4 of the largest magnitude - a hundred times the rounding, and far below what any wrong wiring
gives (differences of the order of the values themselves).
"""

import mindspore as ms
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tests.helpers.modes import switch_mode

NECK_EPS = 1e-5  # lateral, extra and merge-cell BNs
BACKBONE_EPS = 1e-3  # every ResNet BN
REL_TOL = 1e-4  # see the module docstring
RELEASE_BN_MOMENTUM = 0.997  # irrelevant in eval mode; the cells take it explicitly


# ---- numpy reference ops (NCHW, float64) -------------------------------------------------------
def same_pads(size, kernel, stride):
    """'same' padding: output ceil(size / stride); the odd pixel of padding goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(x, w, stride=1, pad=None):
    """Cross-correlation of x (N, C, H, W) with w (O, C, kh, kw); pad=None is 'same', else symmetric."""
    kh, kw = w.shape[2:]
    if pad is None:
        pads = (same_pads(x.shape[2], kh, stride), same_pads(x.shape[3], kw, stride))
    else:
        pads = ((pad, pad), (pad, pad))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, O)
    return out.transpose(0, 3, 1, 2)


def max_pool(x, kernel, stride):
    """Max-pool with 'same' padding (padding never wins: -inf)."""
    pads = (same_pads(x.shape[2], kernel, stride), same_pads(x.shape[3], kernel, stride))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads, constant_values=-np.inf)
    return sliding_window_view(xp, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(4, 5))


def batch_norm(x, p, prefix, eps):
    """Inference BN with the moving statistics stored under `prefix`."""

    def c(name):
        return p[f"{prefix}.{name}"][None, :, None, None]

    return (x - c("moving_mean")) / np.sqrt(c("moving_variance") + eps) * c("gamma") + c("beta")


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def resize_to(x, target_hw):
    """Merge-cell resize: nearest-neighbour upsample to a larger size, max-pool (kernel = stride =
    size ratio) to a smaller one."""
    h, w = x.shape[2:]
    th, tw = target_hw
    if (h, w) == (th, tw):
        return x
    if th > h:
        return x.repeat(th // h, axis=2).repeat(tw // w, axis=3)
    return max_pool(x, h // th, h // th)


def sum_merge(a, b):
    return a + b


def gp_merge(a, b):
    """Global-pooling merge: b + sigmoid(mean over H, W of b) * a (attention from the second input)."""
    return b + sigmoid(b.mean(axis=(2, 3), keepdims=True)) * a


def out_conv(x, p, cell):
    """ReLU -> 3x3 conv (pad 1, no bias) -> BN, parameters `cell.out_conv.features.{1,2}`."""
    x = conv(relu(x), p[f"{cell}.out_conv.features.1.weight"], pad=1)
    return batch_norm(x, p, f"{cell}.out_conv.features.2", NECK_EPS)


def conv_bn(x, p, prefix):
    return batch_norm(conv(x, p[f"{prefix}.conv.weight"]), p, f"{prefix}.batchnorm", NECK_EPS)


def nas_fpn_stage(levels, p, prefix):
    """One NAS-FPN stage typed from the paper's figure: cell index -> (merge, inputs, output)."""
    p3, p4, p5, p6, p7 = levels
    size = {3: p3.shape[2:], 4: p4.shape[2:], 5: p5.shape[2:], 6: p6.shape[2:], 7: p7.shape[2:]}

    def cell(index, merge, a, b, level, with_conv=True):
        x = merge(resize_to(a, size[level]), resize_to(b, size[level]))
        return out_conv(x, p, f"{prefix}.{index}") if with_conv else x

    p4_1 = cell(0, gp_merge, p6, p4, 4)
    p4_2 = cell(1, sum_merge, p4_1, p4, 4)
    p3_new = cell(2, sum_merge, p4_2, p3, 3)
    p4_new = cell(3, sum_merge, p3_new, p4_2, 4)
    p5_tmp = cell(4, gp_merge, p4_new, p3_new, 5, with_conv=False)
    p5_new = cell(5, sum_merge, p5, p5_tmp, 5)
    p7_tmp = cell(6, gp_merge, p5_new, p4_2, 7, with_conv=False)
    p7_new = cell(7, sum_merge, p7, p7_tmp, 7)
    p6_new = cell(8, gp_merge, p7_new, p5_new, 6)
    return p3_new, p4_new, p5_new, p6_new, p7_new


def nas_fpn(c3, c4, c5, p, prefix, num_stages):
    """Laterals (1x1 conv + BN) on C3..C5, P6/P7 by 1x1 conv + BN + 2x2/2 max-pool, then the stages."""
    p3, p4, p5 = (conv_bn(c, p, f"{prefix}.lateral_convs.{i}") for i, c in enumerate((c3, c4, c5)))
    p6 = max_pool(conv_bn(p5, p, f"{prefix}.extra_downsamples.0.0"), 2, 2)
    p7 = max_pool(conv_bn(p6, p, f"{prefix}.extra_downsamples.1.0"), 2, 2)
    levels = (p3, p4, p5, p6, p7)
    for s in range(num_stages):
        levels = nas_fpn_stage(levels, p, f"{prefix}.fpn_stages.{s}")
    return levels


def bottleneck(x, p, prefix, stride):
    """ResNet v1.5 bottleneck: 1x1 -> 3x3(stride) -> 1x1, BN after each, projection shortcut if present."""

    def cbn(v, i, s=1):
        return batch_norm(conv(v, p[f"{prefix}.conv{i}.weight"], s), p, f"{prefix}.bn{i}", BACKBONE_EPS)

    out = relu(cbn(x, 1))
    out = relu(cbn(out, 2, stride))
    out = cbn(out, 3)
    return relu(out + shortcut(x, p, prefix, stride))


def shortcut(x, p, prefix, stride):
    """Projection (1x1 conv with the block's stride + BN) when the block has one, else identity."""
    if f"{prefix}.down_sample_layer.0.weight" not in p:
        return x
    return batch_norm(
        conv(x, p[f"{prefix}.down_sample_layer.0.weight"], stride),
        p,
        f"{prefix}.down_sample_layer.1",
        BACKBONE_EPS,
    )


def basic_block(x, p, prefix, stride):
    """ResNet-18/34 block: 3x3(stride) -> BN -> ReLU -> 3x3 -> BN, plus the shortcut, then ReLU."""
    out = relu(batch_norm(conv(x, p[f"{prefix}.conv1.weight"], stride), p, f"{prefix}.bn1", BACKBONE_EPS))
    out = batch_norm(conv(out, p[f"{prefix}.conv2.weight"]), p, f"{prefix}.bn2", BACKBONE_EPS)
    return relu(out + shortcut(x, p, prefix, stride))


def resnet50(x, p, prefix):
    """Stem 7x7/2 conv + BN + ReLU + 3x3/2 max-pool, then [3, 4, 6, 3] bottlenecks -> (C3, C4, C5)."""
    x = relu(batch_norm(conv(x, p[f"{prefix}.conv1.weight"], 2), p, f"{prefix}.bn1", BACKBONE_EPS))
    x = max_pool(x, 3, 2)
    outputs = []
    for layer, (blocks, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2)), start=1):
        for b in range(blocks):
            x = bottleneck(x, p, f"{prefix}.layer{layer}.{b}", stride if b == 0 else 1)
        outputs.append(x)
    return tuple(outputs[1:])


def head_level(x, p, prefix, num_convs, per_anchor):
    """(conv3x3 -> ReLU) x num_convs, final conv3x3; then row i, column j, anchor a -> one row."""
    for i in range(num_convs):
        x = relu(conv(x, p[f"{prefix}.feats.{2 * i}.weight"]))
    x = conv(x, p[f"{prefix}.feats.{2 * num_convs}.weight"])
    n, channels, h, w = x.shape
    k = channels // per_anchor
    rows = np.empty((n, h * w * k, per_anchor))
    for i in range(h):
        for j in range(w):
            for a in range(k):
                rows[:, (i * w + j) * k + a] = x[:, a * per_anchor : (a + 1) * per_anchor, i, j]
    return rows


def head(features, p, prefix, num_convs, num_classes):
    locs = [
        head_level(f, p, f"{prefix}.multi_loc_layers.{level}", num_convs, 4)
        for level, f in enumerate(features)
    ]
    cls = [
        head_level(f, p, f"{prefix}.multi_cls_layers.{level}", num_convs, num_classes)
        for level, f in enumerate(features)
    ]
    return np.concatenate(locs, axis=1), np.concatenate(cls, axis=1)


def decode_boxes(loc, anchors_cycxhw, scaling=(0.1, 0.2)):
    """Offsets -> (y1, x1, y2, x2): centre = t * 0.1 * size + centre_a, size = exp(t * 0.2) * size_a."""
    a = anchors_cycxhw.astype(np.float64)
    cy = loc[..., 0] * scaling[0] * a[:, 2] + a[:, 0]
    cx = loc[..., 1] * scaling[0] * a[:, 3] + a[:, 1]
    h = np.exp(loc[..., 2] * scaling[1]) * a[:, 2]
    w = np.exp(loc[..., 3] * scaling[1]) * a[:, 3]
    return np.clip(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1), 0, 1)


# ---- helpers ------------------------------------------------------------------------------------
def randomize(cell, seed):
    """Random weights, BN gamma/beta and moving statistics; returns {name: float64 array}."""
    rng = np.random.default_rng(seed)
    values = {}
    for param in cell.get_parameters():
        shape = tuple(param.shape)
        name = param.name
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("moving_mean") or name.endswith("beta"):
            value = rng.normal(0, 0.2, shape)
        elif name.endswith("gamma"):
            value = rng.uniform(0.3, 1.2, shape)
        else:  # conv weights: He-like scale keeps activations O(1)
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        value = value.astype(np.float32)
        param.set_data(ms.Tensor(value))
        values[name] = value.astype(np.float64)
    cell.set_train(False)
    return values


def strip(values, prefix):
    """Parameter names relative to a sub-cell (what a standalone cell calls them)."""
    return {k[len(prefix) + 1 :]: v for k, v in values.items() if k.startswith(prefix + ".")}


def assert_close(ours, ref, what):
    ours = np.asarray(ours, np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    scale = np.abs(ref).max()
    assert scale > 0.1, f"{what}: reference is degenerate ({scale})"
    err = np.abs(ours - ref).max()
    assert err <= REL_TOL * scale, f"{what}: max |diff| {err:.3g} vs magnitude {scale:.3g}"


def tensor(x):
    return ms.Tensor(np.asarray(x, np.float32))


@pytest.fixture(scope="module", autouse=True)
def pynative(request):
    switch_mode(request, ms.PYNATIVE_MODE)


# ---- merge cells --------------------------------------------------------------------------------
CELL_CASES = [  # (kind, level a, level b, out level, with out conv)
    ("gp", 6, 4, 4, True),  # a upsampled x4
    ("sum", 4, 3, 3, True),  # a upsampled x2
    ("sum", 3, 4, 4, True),  # a max-pooled /2
    ("gp", 4, 3, 5, False),  # both max-pooled (/2, /4), no out conv
    ("gp", 5, 4, 7, False),  # /4 and /8
    ("gp", 7, 5, 6, True),  # a x2, b /2
]


@pytest.mark.parametrize("kind, level_a, level_b, out_level, with_conv", CELL_CASES)
def test_merge_cell_matches_numpy(kind, level_a, level_b, out_level, with_conv):
    from nasfpn.model.merge_cells import GlobalPoolingCell, SumCell

    channels = 8
    cell_type = GlobalPoolingCell if kind == "gp" else SumCell
    cell = cell_type(level_a, level_b, out_level, channels, with_conv, RELEASE_BN_MOMENTUM)
    params = randomize(cell, seed=level_a * 100 + level_b * 10 + out_level)
    side = {level: 2 ** (7 - level) for level in range(3, 8)}  # P3 16, P4 8, P5 4, P6 2, P7 1
    rng = np.random.default_rng(7)
    a = rng.normal(size=(2, channels, side[level_a], side[level_a]))
    b = rng.normal(1.0, 1.0, size=(2, channels, side[level_b], side[level_b]))
    target = (side[out_level], side[out_level])
    merge = gp_merge if kind == "gp" else sum_merge
    ref = merge(resize_to(a, target), resize_to(b, target))
    if with_conv:
        ref = out_conv(ref, {f"c.{k}": v for k, v in params.items()}, "c")
    assert_close(cell(tensor(a), tensor(b)).asnumpy(), ref, f"{kind}(P{level_a}, P{level_b}) -> P{out_level}")


def test_gp_attention_comes_from_the_second_input():
    """Hand values: a = 1 everywhere, b's mean is 0 (attention 0.5) -> GP = b + 0.5."""
    from nasfpn.model.merge_cells import GlobalPoolingCell

    cell = GlobalPoolingCell(4, 4, 4, 1, False, RELEASE_BN_MOMENTUM)
    a = np.ones((1, 1, 2, 2))
    b = np.array([[[[2.0, -2.0], [4.0, -4.0]]]])  # mean 0 -> sigmoid 0.5; a's mean 1 -> 0.731
    np.testing.assert_allclose(cell(tensor(a), tensor(b)).asnumpy(), b + 0.5, rtol=0, atol=1e-6)


def test_nearest_upsample_and_same_maxpool_by_hand():
    from nasfpn.model.merge_cells import SumCell

    up = SumCell(5, 4, 4, 1, False, RELEASE_BN_MOMENTUM)  # a: 1x1 level 5 -> 2x2; b: zeros
    a = np.array([[[[3.0, 5.0]]]]).reshape(1, 1, 1, 2)
    out = up(tensor(a), tensor(np.zeros((1, 1, 2, 4)))).asnumpy()
    np.testing.assert_array_equal(out[0, 0], [[3, 3, 5, 5], [3, 3, 5, 5]])
    down = SumCell(3, 5, 5, 1, False, RELEASE_BN_MOMENTUM)  # a: 4x4 level 3 -> 1x1 by a 4x4 max
    a = np.arange(16.0).reshape(1, 1, 4, 4) * np.array([1, -1, 1, -1])
    out = down(tensor(a), tensor(np.zeros((1, 1, 1, 1)))).asnumpy()
    np.testing.assert_array_equal(out.ravel(), [14.0])


# ---- the neck -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_neck():
    """2 stages of 8 channels on C3/C4/C5 of 16x16/8x8/4x4 with 6/10/12 channels."""
    from nasfpn.model.nas_fpn import NasFpn

    neck = NasFpn(in_channels=(6, 10, 12), channels=8, num_stages=2, bn_momentum=RELEASE_BN_MOMENTUM)
    params = randomize(neck, seed=3)
    rng = np.random.default_rng(11)
    inputs = [rng.normal(size=(2, c, s, s)) for c, s in ((6, 16), (10, 8), (12, 4))]
    return neck, params, inputs


def test_nas_fpn_neck_matches_the_numpy_stage_wiring(small_neck):
    neck, params, inputs = small_neck
    ours = neck(*map(tensor, inputs))
    ref = nas_fpn(*inputs, {"n." + k: v for k, v in params.items()}, "n", num_stages=2)
    for level, got, want in zip(range(3, 8), ours, ref):
        assert_close(got.asnumpy(), want, f"P{level}")


def test_each_stage_output_depends_on_the_right_cells(small_neck):
    """A stage's P3' must not change when only cells feeding P5'/P6'/P7' change (and vice versa):
    the data flow of the figure, checked by perturbing one cell's BN beta."""
    neck, params, inputs = small_neck
    before = [o.asnumpy() for o in neck(*map(tensor, inputs))]
    # Cell 5 (SUM(P5, tmp) -> P5') of the last stage feeds P5', P7' (via cell 6) and P6' only.
    beta = {p.name: p for p in neck.get_parameters()}["fpn_stages.1.5.out_conv.features.2.beta"]
    original = beta.asnumpy().copy()
    beta.set_data(ms.Tensor(original + 1.0))
    try:
        after = [o.asnumpy() for o in neck(*map(tensor, inputs))]
    finally:
        beta.set_data(ms.Tensor(original))
    changed = [not np.array_equal(x, y) for x, y in zip(before, after)]
    assert changed == [False, False, True, True, True]  # P3', P4' untouched


# ---- backbone, head, decoder, whole detector ----------------------------------------------------
@pytest.fixture(scope="module")
def small_detector():
    """ResNet-50 (the release's backbone), NAS-FPN 2 stages x 8 channels, 4-conv heads, 3 classes."""
    from nasfpn.model.detector import RetinaNetNasFpn

    net = RetinaNetNasFpn(
        num_classes=3, backbone_depth=50, fpn_channels=8, fpn_stages=2, head_convs=4, anchors_per_cell=9
    )
    params = randomize(net, seed=5)
    image = np.random.default_rng(13).normal(size=(1, 3, 128, 128))
    return net, params, image


def test_resnet50_backbone_matches_numpy(small_detector):
    net, params, image = small_detector
    ours = net.backbone(tensor(image))
    ref = resnet50(image, params, "backbone")
    for name, got, want in zip(("C3", "C4", "C5"), ours, ref):
        assert_close(got.asnumpy(), want, name)
    assert [r.shape for r in ref] == [(1, 512, 16, 16), (1, 1024, 8, 8), (1, 2048, 4, 4)]


def test_bottleneck_block_with_stride_and_projection_matches_numpy():
    """One strided bottleneck on an odd-sized input, where 'same' padding is asymmetric."""
    from nasfpn.model.resnet import Bottleneck

    block = Bottleneck(in_channels=8, width=4, stride=2, bn_momentum=RELEASE_BN_MOMENTUM)
    params = randomize(block, seed=17)
    x = np.random.default_rng(2).normal(size=(2, 8, 7, 9))
    ref = bottleneck(x, {f"b.{k}": v for k, v in params.items()}, "b", stride=2)
    assert ref.shape == (2, 16, 4, 5)
    assert_close(block(tensor(x)).asnumpy(), ref, "bottleneck")


@pytest.mark.parametrize("in_channels, width, stride, projection", [(8, 4, 2, True), (6, 6, 1, False)])
def test_basic_block_matches_numpy(in_channels, width, stride, projection):
    """ResNet-18/34's block, strided with projection on an odd-sized input, and with identity."""
    from nasfpn.model.resnet import BasicBlock

    block = BasicBlock(in_channels, width, stride, RELEASE_BN_MOMENTUM)
    params = randomize(block, seed=29)
    assert params["conv1.weight"].shape == (width, in_channels, 3, 3)
    assert params["conv2.weight"].shape == (width, width, 3, 3)
    assert ("down_sample_layer.0.weight" in params) == projection
    x = np.random.default_rng(4).normal(size=(2, in_channels, 7, 9))
    ref = basic_block(x, {f"b.{k}": v for k, v in params.items()}, "b", stride)
    assert ref.shape == (2, width, -(-7 // stride), -(-9 // stride))
    assert_close(block(tensor(x)).asnumpy(), ref, "basic block")


def test_head_matches_numpy_including_row_column_anchor_order(small_detector):
    net, params, _ = small_detector
    rng = np.random.default_rng(19)
    # Non-square maps so a row/column mix-up changes the order.
    features = [rng.normal(size=(2, 8, h, w)) for h, w in ((4, 6), (2, 3), (2, 1), (1, 2), (1, 1))]
    loc, cls = net.head(tuple(map(tensor, features)))
    ref_loc, ref_cls = head(features, params, "head", num_convs=4, num_classes=3)
    assert_close(loc.asnumpy(), ref_loc, "loc")
    assert_close(cls.asnumpy(), ref_cls, "cls")


def test_whole_detector_is_the_composition_of_the_numpy_parts(small_detector):
    net, params, image = small_detector
    loc, cls = net(tensor(image))
    c3, c4, c5 = resnet50(image, params, "backbone")
    features = nas_fpn(c3, c4, c5, params, "neck", num_stages=2)
    ref_loc, ref_cls = head(features, params, "head", num_convs=4, num_classes=3)
    assert ref_loc.shape == (1, 9 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1), 4)
    assert_close(loc.asnumpy(), ref_loc, "loc")
    assert_close(cls.asnumpy(), ref_cls, "cls")


def test_box_decoder_matches_numpy():
    from nasfpn.ops.boxes import Anchors, AnchorSpec
    from nasfpn.model.detector import BoxDecoder

    anchors = Anchors(AnchorSpec((128, 128), (8, 16, 32, 64, 128), (8, 16, 32, 64, 128), (0.5, 1.0, 2.0)))
    loc = np.random.default_rng(23).normal(0, 2, size=(2, len(anchors), 4))
    # float64 anchors in, float32 graph out; a non-default prior scaling
    boxes = BoxDecoder(anchors.cycxhw.astype(np.float64), (0.05, 0.15))(tensor(loc))
    assert boxes.dtype == ms.float32
    boxes = boxes.asnumpy()
    ref = decode_boxes(loc, anchors.cycxhw, (0.05, 0.15))
    assert 0 < np.mean(ref == 0) < 0.5 and 0 < np.mean(ref == 1) < 0.5  # clipping is exercised
    np.testing.assert_allclose(boxes, ref, rtol=0, atol=1e-5)  # values in [0, 1]; float32 exp


def test_inference_graph_is_the_decoded_offsets_and_sigmoid_scores(small_detector):
    from nasfpn.ops.boxes import Anchors, AnchorSpec
    from nasfpn.model.detector import RetinaNetInfer

    net, _, image = small_detector
    anchors = Anchors(AnchorSpec((128, 128), (8, 16, 32, 64, 128), (8, 16, 32, 64, 128), (0.5, 1.0, 2.0)))
    boxes, scores = RetinaNetInfer(net, anchors.cycxhw, (0.05, 0.15))(tensor(image))
    loc, cls = (t.asnumpy().astype(np.float64) for t in net(tensor(image)))
    ref = decode_boxes(loc, anchors.cycxhw, (0.05, 0.15))
    assert 0.1 < np.mean((ref > 0) & (ref < 1))  # not all clipped
    np.testing.assert_allclose(boxes.asnumpy(), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores.asnumpy(), sigmoid(cls), rtol=0, atol=1e-6)
