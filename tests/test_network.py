"""The network: checkpoint-exact parameter names/shapes, forward shapes, every model option reaching
its cell, the prior bias and loss options by value, and activation recompute."""

import math

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest
from mindspore.nn.utils import no_init_parameters

from nasfpn.ops.boxes import Anchors
from nasfpn.inference.build import build_inference_network
from nasfpn.model import RetinaNetWithLoss, build_detector
from nasfpn.model.detector import RetinaNetNasFpn
from nasfpn.model.recompute import RECOMPUTE_CHOICES, apply_recompute, recompute_cells
from nasfpn.model.retina_head import prior_bias
from tests.conftest import TINY, make_config
from tests.helpers.modes import switch_mode
from tests.helpers.training_state import assert_states_match, state_of
from tests.test_loss import numpy_total


# The network: checkpoint-exact parameter names/shapes, forward shapes, other sizes and classes.


@pytest.fixture(scope="module")
def release_net():
    """The published network's cells, their parameters left uninitialised (seconds of random
    numbers saved): a test that reads values initialises those it reads with their own
    initializer (Parameter.init_data), the one the network was built with."""
    with no_init_parameters():
        return build_inference_network(make_config())


def test_parameter_names_and_shapes_equal_the_manifest(release_net, manifest_rows):
    ours = [(p.name, tuple(p.shape), p.requires_grad) for p in release_net.get_parameters()]
    assert len(ours) == 585
    assert ours == list(manifest_rows)


def test_training_network_has_the_same_names(manifest_rows):
    cfg = make_config()
    with no_init_parameters():  # names only: under a second without the initialisation
        net = RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), cfg.num_classes)
    assert [p.name for p in net.trainable_params()] == [n for n, _, g in manifest_rows if g]


def test_initialisation_follows_the_release(release_net):
    read = (
        "network.neck.fpn_stages.3.5.out_conv.features.1.weight",
        "network.backbone.layer3.0.conv2.weight",
        "network.head.multi_cls_layers.0.feats.0.weight",
        "network.backbone.layer2.1.bn3.gamma",
        "network.backbone.layer2.1.bn2.gamma",
    )
    params = {p.name: p.init_data().asnumpy() for p in release_net.get_parameters() if p.name in read}
    # TruncatedNormal(0.02) cut at 2 sigma: std = 0.02 * 0.8796, values in [-0.04, 0.04], mean 0.
    # One conv of each kind: explicit padding 1 (neck), 'same' (backbone), head.
    for name in (
        "network.neck.fpn_stages.3.5.out_conv.features.1.weight",
        "network.backbone.layer3.0.conv2.weight",
        "network.head.multi_cls_layers.0.feats.0.weight",
    ):
        w = params[name]
        assert abs(w.std() - 0.0176) < 0.0005, name
        assert -0.04 - 1e-6 <= w.min() < -0.039 and 0.039 < w.max() <= 0.04 + 1e-6, name
        assert abs(w.mean()) < 5e-4, name
    assert not params["network.backbone.layer2.1.bn3.gamma"].any()  # last BN of a block: 0
    assert (params["network.backbone.layer2.1.bn2.gamma"] == 1).all()


@pytest.mark.slow
def test_forward_640_release_shapes(release_net):
    ms.set_context(mode=ms.GRAPH_MODE)
    x = ms.Tensor(np.random.default_rng(0).normal(size=(1, 3, 640, 640)).astype(np.float32))
    boxes, scores = release_net(x)
    assert boxes.shape == (1, 76725, 4) and scores.shape == (1, 76725, 81)
    b, s = boxes.asnumpy(), scores.asnumpy()
    assert b.min() >= 0 and b.max() <= 1 and np.all(b[..., 2:] >= b[..., :2])
    assert s.min() > 0 and s.max() < 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, anchors",
    [
        (("--img_shape=[256,256]",), 9 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)),
        (
            ("--img_shape=[128,256]", "--num_classes=4") + TINY[1:],
            9 * (16 * 32 + 8 * 16 + 4 * 8 + 2 * 4 + 1 * 2),
        ),
    ],
)
def test_other_sizes_and_class_counts(overrides, anchors):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = make_config(*overrides)
    net = build_inference_network(cfg)
    x = ms.Tensor(np.zeros((2, 3, *cfg.img_shape), np.float32))
    boxes, scores = net(x)
    assert boxes.shape == (2, anchors, 4) and scores.shape == (2, anchors, cfg.num_classes)
    assert len(Anchors(cfg.anchors.spec(cfg.model.img_shape))) == anchors


def test_loss_equals_the_reference_and_zero_positive_batches_do_not_divide_by_zero():
    """The training graph's loss equals the numpy focal + smooth-L1 reference (tests/test_loss.py)
    on the detector's own outputs; with no positive anchor it divides by 1, not 0."""
    from nasfpn.ops.boxes import AnchorMatcher
    from tests.test_loss import numpy_loss

    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = make_config(*TINY)
    net = RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), cfg.num_classes, cfg.gamma, cfg.alpha)
    matcher = AnchorMatcher(Anchors(cfg.anchors.spec(cfg.model.img_shape)))
    loc, label, num = matcher.encode(np.array([[0.2, 0.2, 0.6, 0.7]], np.float32), [3])
    images = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 128, 128)).astype(np.float32))
    pred_loc, logits = (t.asnumpy().astype(np.float64) for t in net.network(images))
    gt_loc = np.stack([loc, np.zeros_like(loc)])
    gt_label = np.stack([label, np.zeros_like(label)])
    num_match = np.stack([num, [0]]).astype(np.int32)
    loss = net(images, ms.Tensor(gt_loc), ms.Tensor(gt_label), ms.Tensor(num_match))
    assert int(num[0]) > 0
    np.testing.assert_allclose(
        loss.asnumpy(),
        numpy_loss(pred_loc, logits, gt_loc, gt_label, num_match, cfg.gamma, cfg.alpha),
        rtol=1e-4,
    )
    no_label = np.zeros((2, len(label)), np.int32)
    empty = net(
        images,
        ms.Tensor(np.zeros((2, len(label), 4), np.float32)),
        ms.Tensor(no_label),
        ms.Tensor(np.zeros((2, 1), np.int32)),
    )
    # Reference normalised by max(positives, 1) = 1: pass it a count that sums to 1.
    np.testing.assert_allclose(
        empty.asnumpy(),
        numpy_loss(
            pred_loc, logits, np.zeros_like(gt_loc), no_label, np.array([[1], [0]]), cfg.gamma, cfg.alpha
        ),
        rtol=1e-4,
    )


@pytest.mark.slow
def test_prior_bias_option_starts_scores_at_the_prior(manifest_rows):
    """cls_prior_probability adds only the final cls-conv biases; scores start at p (1-p for bg)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = make_config(*TINY, "--num_classes=4", "--cls_prior_probability=0.01")
    net = build_inference_network(cfg)
    extra = [p.name for p in net.get_parameters() if p.name.endswith(".bias")]
    assert extra == [f"network.head.multi_cls_layers.{i}.feats.2.bias" for i in range(5)]
    _, scores = net(ms.Tensor(np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32)))
    s = scores.asnumpy()[0]
    assert abs(np.median(s[:, 1:]) - 0.01) < 0.005 and abs(np.median(s[:, 0]) - 0.99) < 0.005
    with no_init_parameters():  # names only
        release = build_inference_network(make_config())
    assert not [p.name for p in release.get_parameters() if p.name.endswith(".bias")]


def test_stage_table_names_state_each_cells_inputs_and_output():
    """mmdetection's names (type_<input levels>_<output level>) of the release stage's cells, in
    the checkpoint's order (fpn_stages.<s>.<index>)."""
    from nasfpn.config.pyramid import RELEASE_STAGE, cell_labels

    assert cell_labels(RELEASE_STAGE) == (
        "gp_64_4", "sum_44_4", "sum_43_3", "sum_34_4", "gp_43_5", "sum_55_5", "gp_54_7", "sum_77_7", "gp_75_6",
    )  # fmt: skip
    assert [c.name for c in RELEASE_STAGE if c.is_output] == [
        "p3_out",
        "p4_out",
        "p5_out",
        "p7_out",
        "p6_out",
    ]
    assert [c.output_conv for c in RELEASE_STAGE] == [True] * 4 + [False, True, False, True, True]


def test_stage_wiring_refuses_an_input_used_before_it_is_made():
    from nasfpn.config.pyramid import RELEASE_STAGE, PyramidSpecError, stage_wiring

    wiring = stage_wiring(RELEASE_STAGE)
    assert wiring.inputs[:3] == ((3, 1), (5, 1), (6, 0))
    assert wiring.outputs == (7, 8, 10, 13, 12)  # p3_out..p7_out among the 5 inputs + 9 cells
    swapped = (RELEASE_STAGE[1], RELEASE_STAGE[0]) + RELEASE_STAGE[2:]
    with pytest.raises(PyramidSpecError, match="cell 0 \\(p4_2\\): input 'p4_1' is not made before it"):
        stage_wiring(swapped)


# How the detector is built: every model option reaches its cell, the defaults of RetinaNetNasFpn
# are the release network, and every BatchNorm / conv is made with the stated settings.
#
# The options network below differs from the release in every key, so an option that is dropped on
# the way (and silently replaced by a default) changes a shape, a count or a value checked here.

P = 0.01  # cls_prior_probability
NUM_CLASSES = 5
ANCHORS = 2 * 2  # 2 aspect ratios x 2 scales
MOMENTUM = 0.8  # not MindSpore's default 0.9, so a momentum not passed on shows


@pytest.fixture(scope="module")
def options_net(request):
    switch_mode(request, ms.PYNATIVE_MODE)
    cfg = make_config(
        *TINY,
        f"--num_classes={NUM_CLASSES}",
        "--aspect_ratios=[1.0,2.0]",
        "--num_scales=2",
        "--fpn_stages=2",
        "--head_convs=2",
        "--fpn_channels=16",
        f"--cls_prior_probability={P}",
        f"--bn_momentum={MOMENTUM}",
    )
    net = build_detector(cfg.model, cfg.anchors)
    return net, {p.name: p for p in net.get_parameters()}


def test_backbone_depth_18_is_built_of_basic_blocks(options_net):
    _, params = options_net
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    blocks = {n.split(".")[1] + "." + n.split(".")[2] for n in shapes if n.startswith("backbone.layer")}
    assert sorted(blocks) == [f"layer{i}.{b}" for i in range(1, 5) for b in range(2)]  # [2, 2, 2, 2]
    assert shapes["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["backbone.layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["backbone.layer2.0.conv1.weight"] == (128, 64, 3, 3)
    assert shapes["backbone.layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["backbone.layer2.0.down_sample_layer.0.weight"] == (128, 64, 1, 1)
    assert "backbone.layer1.0.down_sample_layer.0.weight" not in shapes  # 64 -> 64, stride 1
    assert not [n for n in shapes if ".conv3." in n]  # no bottlenecks


def test_neck_has_the_configured_channels_and_stages(options_net):
    _, params = options_net
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    # ResNet-18's C3, C4, C5 have 128, 256, 512 channels
    assert [shapes[f"neck.lateral_convs.{i}.conv.weight"] for i in range(3)] == [
        (16, 128, 1, 1),
        (16, 256, 1, 1),
        (16, 512, 1, 1),
    ]
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
    from nasfpn.model.resnet import ResNet

    with pytest.raises(ValueError, match=r"backbone_depth must be one of \[18, 34, 50, 101\], got 51"):
        ResNet(51, MOMENTUM)


def test_detector_defaults_build_the_published_network(manifest_rows):
    """RetinaNetNasFpn() with no arguments is the published network, BN momentum included."""
    with no_init_parameters():  # names, shapes and settings only: no values needed
        net = RetinaNetNasFpn()
    ours = [(p.name, tuple(p.shape), p.requires_grad) for p in net.get_parameters()]
    assert ours == [(name[len("network.") :], shape, grad) for name, shape, grad in manifest_rows]
    norms = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    assert {round(bn.momentum, 6) for bn in norms} == {round(1 - 0.997, 6)}


def test_default_config_is_the_release_network():
    cfg = make_config()
    assert (
        cfg.num_classes,
        cfg.backbone_depth,
        cfg.fpn_channels,
        cfg.fpn_stages,
        cfg.head_convs,
        len(cfg.aspect_ratios) * cfg.num_scales,
        cfg.cls_prior_probability,
        cfg.bn_momentum,
    ) == (81, 50, 256, 7, 4, 9, 0.0, 0.997)


def test_conv2d_helper_padding_stride_and_bias():
    from nasfpn.model.layers import conv2d

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
    assert same.pad_mode == "same" and same(ms.Tensor(np.ones((1, 2, 7, 7), np.float32))).shape == (
        1,
        3,
        4,
        4,
    )
    for padding in (None, 1):
        biased = conv2d(2, 3, 1, padding=padding, bias_init=ms.Tensor(np.array([1.0, 2.0, 3.0], np.float32)))
        assert biased.has_bias, padding
        np.testing.assert_array_equal(biased.bias.asnumpy(), [1.0, 2.0, 3.0])


# Model-level options checked by value: the prior-probability bias and the loss options of the
# training wrapper (defaults gamma 2, alpha 0.75; given values passed on).


@pytest.mark.parametrize("p", [0.01, 0.2])
def test_prior_bias_gives_sigmoid_p_for_objects_and_1_minus_p_for_background(p):
    bias = prior_bias(p, 2, 3).asnumpy().reshape(2, 3)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias.astype(np.float64))), [[1 - p, p, p]] * 2, rtol=1e-6)
    assert bias[0, 0] == pytest.approx(math.log((1 - p) / p), rel=1e-6)


class FixedOutputs(nn.Cell):
    """A stand-in detector body that returns given (loc, logits) whatever the images."""

    def __init__(self, loc, logits):
        super().__init__()
        self.loc, self.logits = ms.Tensor(loc), ms.Tensor(logits)

    def construct(self, images):
        return self.loc, self.logits


@pytest.fixture(scope="module")
def outputs(request):
    switch_mode(request, ms.PYNATIVE_MODE)
    rng = np.random.default_rng(9)
    n, a, c = 2, 30, 4
    label = rng.integers(0, c, size=(n, a)).astype(np.int32)
    label[:, 1::3] = 0
    return dict(
        loc=rng.normal(size=(n, a, 4)).astype(np.float32),
        logits=rng.normal(scale=2, size=(n, a, c)).astype(np.float32),
        gt_loc=rng.normal(size=(n, a, 4)).astype(np.float32),
        label=label,
        num=np.count_nonzero(label, axis=1).astype(np.int32)[:, None],
        c=c,
    )


@pytest.mark.parametrize("options", [(), (1.0, 0.25)])
def test_with_loss_uses_the_given_or_default_focal_options(outputs, options):
    o = outputs
    net = RetinaNetWithLoss(FixedOutputs(o["loc"], o["logits"]), o["c"], *options)
    images = ms.Tensor(np.zeros((2, 3, 8, 8), np.float32))
    got = float(net(images, ms.Tensor(o["gt_loc"]), ms.Tensor(o["label"]), ms.Tensor(o["num"])).asnumpy())
    gamma, alpha = options or (2.0, 0.75)
    assert got == pytest.approx(
        numpy_total(o["loc"], o["logits"], o["gt_loc"], o["label"], o["num"], gamma, alpha), rel=1e-5
    )


# Activation recompute: the same losses, weights and BatchNorm running statistics as `none`, the
# same parameter names, and only the chosen parts marked.

STEPS = 3
# Small enough for float32 differences to stay rounding-sized over STEPS steps. This loss (focal
# terms summed over ~3k anchors, divided by a handful of matches) has curvature ~5e3 at the start:
# at lr 1e-2 a 1-ulp difference grows 20-100x per step (measured: 2e-5 -> 4e-4 -> 5e-2 of the
# momenta between two CPU kernels' orders), at 1e-4 by at most 1 + lr * 5e3 = 1.5x.
LR = 1e-4


def _batch(cfg):
    from nasfpn.ops.boxes import AnchorMatcher, Anchors

    matcher = AnchorMatcher(Anchors(cfg.anchors.spec(cfg.model.img_shape)))
    target = matcher.encode(np.array([[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.9, 0.9]], np.float32), [1, 3])
    images = np.random.default_rng(0).normal(size=(2, 3, *cfg.img_shape)).astype(np.float32)
    return [ms.Tensor(images)] + [ms.Tensor(np.stack([target[k]] * 2)) for k in range(3)]


def _train(cfg, which):
    """Losses of STEPS training steps (graph mode, BN in training mode), the initial and the final
    state."""
    from nasfpn.model import RetinaNetWithLoss
    from nasfpn.training.train_step import TrainStep, build_optimizer

    ms.set_seed(0)
    detector = build_detector(cfg.model, cfg.anchors)
    apply_recompute(detector, which)
    net = RetinaNetWithLoss(detector, cfg.num_classes)
    step = TrainStep(net, build_optimizer(net, np.full(STEPS, LR, np.float32)), 1024.0, grad_clip_norm=10.0)
    step.set_train()
    initial = state_of(step)
    batch = _batch(cfg)
    losses = [float(step(*batch)[0].asnumpy()) for _ in range(STEPS)]
    return losses, initial, state_of(step)


@pytest.fixture(scope="module")
def baseline(request):
    switch_mode(request, ms.GRAPH_MODE)
    cfg = make_config(*TINY, "--num_classes=4")
    return cfg, _train(cfg, "none")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["backbone", "all"])
def test_recompute_trains_to_the_same_numbers(baseline, which):
    cfg, (losses, initial, state) = baseline
    got_losses, got_initial, got_state = _train(cfg, which)
    assert losses[-1] < losses[0]
    for name, value in initial.items():  # same seed, same cells: recompute is only a flag
        np.testing.assert_array_equal(got_initial[name], value, err_msg=name)
    # Recomputed graphs may fuse and sum the same terms in another order. The loss sums positive
    # terms (no cancellation): its relative error is that of the forward activations, ~D sqrt(K) u
    # = 25 convolutions on the longest path x sqrt(9 x 512) x 6e-8 = 1e-4.
    np.testing.assert_allclose(got_losses, losses, rtol=1e-4, atol=0)
    # A gradient carries that 1e-4 too; over 3 steps, with lr x curvature <= 0.5 (see LR) and the
    # momentum sums m3 = g3 + .9 g2 + .81 g1, it is at most (1 + .9 x 1.5 + .81 x 1.5^2) x 1e-4
    # = 4.2e-4 of each tensor's move: c = 1e-3. Measured here and with oneDNN capped at AVX2 and
    # SSE4.1: <= 1e-4. A BatchNorm updating its running statistics twice doubles their move (1.0),
    # a wrong recomputed activation changes gradients by far more than 1e-3.
    assert_states_match(got_state, state, initial, c=1e-3, steps=STEPS)


def test_choices_mark_only_their_part_and_keep_parameter_names():
    cfg = make_config(*TINY, "--num_classes=4")
    with no_init_parameters():  # which cells are marked: no values needed
        detector = build_detector(cfg.model, cfg.anchors)
    names = [p.name for p in detector.get_parameters()]
    expected_parts = {
        "none": set(),
        "backbone": {"backbone"},
        "neck": {"neck"},
        "all": {"backbone", "neck", "head"},
    }
    for which in RECOMPUTE_CHOICES:
        marked = {id(cell) for cell in recompute_cells(detector, which)}
        parts = {name.split(".")[0] for name, cell in detector.cells_and_names() if id(cell) in marked}
        assert parts == expected_parts[which], which
    # TINY: ResNet-18 has 8 blocks; 1 NAS-FPN stage of 9 cells + 3 laterals + 2 extra levels;
    # 5 levels x (box, class) subnets
    counts = {which: len(recompute_cells(detector, which)) for which in RECOMPUTE_CHOICES}
    assert counts == {"none": 0, "backbone": 8, "neck": 9 + 3 + 2, "all": 8 + 14 + 10}
    assert len({id(c) for c in recompute_cells(detector, "all")}) == 32

    with no_init_parameters():
        backbone_only = build_detector(cfg.model, cfg.anchors)
    assert apply_recompute(backbone_only, "backbone") == 8
    # MindSpore's flag for a cell marked by Cell.recompute()
    # (the flag is passed on to the cells inside a marked block)
    marked = [name for name, cell in backbone_only.cells_and_names() if cell._has_config_recompute]
    assert sorted({".".join(name.split(".")[:3]) for name in marked}) == [
        f"backbone.layer{i}.{b}" for i in range(1, 5) for b in range(2)
    ]
    assert "backbone.layer1.0" in marked and "backbone.layer1.0.conv1" in marked

    count = apply_recompute(detector, "all")
    assert count == len(recompute_cells(detector, "all")) > 0
    assert [p.name for p in detector.get_parameters()] == names
    batch_norms = [
        inner
        for cell in recompute_cells(detector, "all")
        for _, inner in cell.cells_and_names()
        if isinstance(inner, nn.BatchNorm2d)
    ]
    assert batch_norms and all(bn.bn_train.attrs.get("recompute") is False for bn in batch_norms)
    with pytest.raises(ValueError, match="recompute must be one of"):
        recompute_cells(detector, "some")


# Synchronised BatchNorm (sync_bn): the same Parameter objects in nn.SyncBatchNorm cells, so the
# release's names are kept; the same numbers without synchronisation; refused off Ascend.


def test_sync_bn_keeps_the_release_names_shapes_and_bn_settings(manifest_rows):
    from mindspore.nn.utils import no_init_parameters
    from nasfpn.model.layers import synchronise_batch_norms

    cfg = make_config()
    with no_init_parameters():  # names and shapes only: the weights are never drawn (8 s saved)
        plain, synced = build_detector(cfg.model, cfg.anchors), build_detector(cfg.model, cfg.anchors)
    plain_bns = [(name, cell) for name, cell in plain.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    assert synchronise_batch_norms(synced, process_groups=0) == len(plain_bns) == 107
    net = RetinaNetWithLoss(synced, cfg.num_classes)
    assert [(p.name, tuple(p.shape), p.requires_grad) for p in net.get_parameters()] == list(manifest_rows)
    synced_bns = dict(
        (name, cell)
        for name, cell in synced.cells_and_names()
        if isinstance(cell, (nn.BatchNorm2d, nn.SyncBatchNorm))
    )
    assert sorted(synced_bns) == sorted(name for name, _ in plain_bns)
    for name, bn in plain_bns:
        assert isinstance(synced_bns[name], nn.SyncBatchNorm), name
        assert (synced_bns[name].eps, synced_bns[name].momentum) == (bn.eps, bn.momentum), name
    apply_recompute(synced, "all")  # recompute keeps the synchronised BNs' statistics update single
    inner = [
        cell
        for block in recompute_cells(synced, "all")
        for _, cell in block.cells_and_names()
        if isinstance(cell, nn.SyncBatchNorm)
    ]
    assert inner and all(bn.bn_train.attrs.get("recompute") is False for bn in inner)


class _BnPair(nn.Cell):
    """A ConvBn (BN as an attribute) then a ReluConvBn (BN inside a SequentialCell)."""

    def __init__(self):
        super().__init__()
        from nasfpn.model.layers import ConvBn
        from nasfpn.model.merge_cells import ReluConvBn

        self.lateral = ConvBn(3, 8, 1e-3, 0.9)
        self.out_conv = ReluConvBn(8, 0.9)

    def construct(self, x):
        return self.out_conv(self.lateral(x))


def test_sync_bn_without_a_group_computes_what_batch_norm_computes(request):
    from nasfpn.model.layers import synchronise_batch_norms

    switch_mode(request, ms.PYNATIVE_MODE)
    plain, synced = _BnPair(), _BnPair()
    copies = {p.name: ms.Parameter(p.data.copy(), p.name) for p in plain.get_parameters()}
    ms.load_param_into_net(synced, copies)
    assert synchronise_batch_norms(synced, process_groups=0) == 2
    assert isinstance(synced.out_conv.features[2], nn.SyncBatchNorm)
    images = ms.Tensor(np.random.default_rng(3).normal(size=(4, 3, 16, 16)).astype(np.float32))
    plain.set_train(True), synced.set_train(True)
    for _ in range(2):  # the same BatchNorm op underneath: outputs and running statistics
        np.testing.assert_array_equal(synced(images).asnumpy(), plain(images).asnumpy())
    for p, q in zip(synced.get_parameters(), plain.get_parameters()):
        assert p.name == q.name
        np.testing.assert_array_equal(p.asnumpy(), q.asnumpy(), err_msg=p.name)


@pytest.mark.parametrize("target", ["CPU", "GPU"])
def test_sync_bn_is_refused_off_ascend_before_any_work(tmp_path, target):
    import logging
    import os
    from nasfpn.config.flat import ConfigError
    from nasfpn.training.run import train_from_config

    cfg = make_config(
        f"--device_target={target}",
        "--sync_bn=true",
        f"--mindrecord_dir={tmp_path}",
        f"--save_checkpoint_path={tmp_path / 'ck'}",
    )
    with pytest.raises(ConfigError) as raised:
        train_from_config(cfg, logging.getLogger("test.sync_bn"))
    assert str(raised.value) == (
        f"--sync_bn=true: synchronised BatchNorm (nn.SyncBatchNorm) runs on "
        f"Ascend only, not on device_target {target}; set --sync_bn=false"
    )
    assert os.listdir(tmp_path) == []
    cfg.training.check_sync_bn("Ascend")
    cfg.replace(sync_bn=False).training.check_sync_bn(target)
