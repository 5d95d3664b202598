"""The network: checkpoint-exact parameter names/shapes, forward shapes, other sizes and classes."""
import mindspore as ms
import numpy as np
import pytest

from src.boxes import Anchors, AnchorSpec
from src.inference.build import build_inference_network
from src.model import RetinaNetWithLoss, build_detector
from tests.conftest import TINY, make_config


@pytest.fixture(scope="module")
def release_net():
    return build_inference_network(make_config())


def test_parameter_names_and_shapes_equal_the_manifest(release_net, manifest_rows):
    ours = [(p.name, tuple(p.shape), p.requires_grad) for p in release_net.get_parameters()]
    assert len(ours) == 585
    assert ours == list(manifest_rows)


@pytest.mark.slow
def test_training_network_has_the_same_names(manifest_rows):
    cfg = make_config()
    net = RetinaNetWithLoss(build_detector(cfg), cfg.num_classes)
    assert [p.name for p in net.trainable_params()] == [n for n, _, g in manifest_rows if g]


def test_initialisation_follows_the_release(release_net):
    params = {p.name: p.asnumpy() for p in release_net.get_parameters()}
    # TruncatedNormal(0.02) cut at 2 sigma: std = 0.02 * 0.8796, values in [-0.04, 0.04], mean 0.
    # One conv of each kind: explicit padding 1 (neck), 'same' (backbone), head.
    for name in ("network.neck.fpn_stages.3.5.out_conv.features.1.weight",
                 "network.backbone.layer3.0.conv2.weight", "network.head.multi_cls_layers.0.feats.0.weight"):
        w = params[name]
        assert abs(w.std() - 0.0176) < 0.0005, name
        assert -0.04 - 1e-6 <= w.min() < -0.039 and 0.039 < w.max() <= 0.04 + 1e-6, name
        assert abs(w.mean()) < 5e-4, name
    assert not params["network.backbone.layer2.1.bn3.gamma"].any()        # last BN of a block: 0
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
@pytest.mark.parametrize("overrides, anchors", [
    (("--img_shape=[256,256]",), 9 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)),
    (("--img_shape=[128,256]", "--num_classes=4") + TINY[1:], 9 * (16 * 32 + 8 * 16 + 4 * 8 + 2 * 4 + 1 * 2)),
])
def test_other_sizes_and_class_counts(overrides, anchors):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = make_config(*overrides)
    net = build_inference_network(cfg)
    x = ms.Tensor(np.zeros((2, 3, *cfg.img_shape), np.float32))
    boxes, scores = net(x)
    assert boxes.shape == (2, anchors, 4) and scores.shape == (2, anchors, cfg.num_classes)
    assert len(Anchors(AnchorSpec.from_config(cfg))) == anchors


def test_loss_equals_the_reference_and_zero_positive_batches_do_not_divide_by_zero():
    """The training graph's loss equals the numpy focal + smooth-L1 reference (tests/test_loss.py)
    on the detector's own outputs; with no positive anchor it divides by 1, not 0."""
    from src.boxes import AnchorMatcher
    from tests.test_loss import numpy_loss
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = make_config(*TINY)
    net = RetinaNetWithLoss(build_detector(cfg), cfg.num_classes, cfg.gamma, cfg.alpha)
    matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)))
    loc, label, num = matcher.encode(np.array([[0.2, 0.2, 0.6, 0.7]], np.float32), [3])
    images = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 128, 128)).astype(np.float32))
    pred_loc, logits = (t.asnumpy().astype(np.float64) for t in net.network(images))
    gt_loc = np.stack([loc, np.zeros_like(loc)])
    gt_label = np.stack([label, np.zeros_like(label)])
    num_match = np.stack([num, [0]]).astype(np.int32)
    loss = net(images, ms.Tensor(gt_loc), ms.Tensor(gt_label), ms.Tensor(num_match))
    assert int(num[0]) > 0
    np.testing.assert_allclose(loss.asnumpy(), numpy_loss(pred_loc, logits, gt_loc, gt_label, num_match,
                                                          cfg.gamma, cfg.alpha), rtol=1e-4)
    no_label = np.zeros((2, len(label)), np.int32)
    empty = net(images, ms.Tensor(np.zeros((2, len(label), 4), np.float32)), ms.Tensor(no_label),
                ms.Tensor(np.zeros((2, 1), np.int32)))
    # Reference normalised by max(positives, 1) = 1: pass it a count that sums to 1.
    np.testing.assert_allclose(empty.asnumpy(), numpy_loss(pred_loc, logits, np.zeros_like(gt_loc), no_label,
                                                           np.array([[1], [0]]), cfg.gamma, cfg.alpha),
                               rtol=1e-4)


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
    release = build_inference_network(make_config())
    assert not [p.name for p in release.get_parameters() if p.name.endswith(".bias")]


def test_stage_table_names_state_each_cells_inputs_and_output():
    """mmdetection-style names (type_<input levels>_<output level>) agree with the table's rows."""
    from src.model.merge_cells import GlobalPoolingCell, SumCell
    from src.model.nas_fpn import INPUT_LEVELS, STAGE_CELLS
    levels = dict(INPUT_LEVELS)
    prefixes = {GlobalPoolingCell: "gp", SumCell: "sum"}
    for name, cell_type, a, b, out, out_level, _ in STAGE_CELLS:
        assert name == f"{prefixes[cell_type]}_{levels[a]}{levels[b]}_{out_level}"
        levels[out] = out_level


def test_stage_wiring_refuses_an_input_used_before_it_is_made():
    from src.model.nas_fpn import STAGE_CELLS, STAGE_INPUTS, _wiring
    assert _wiring(STAGE_CELLS, STAGE_INPUTS)[:3] == ((3, 1), (5, 1), (6, 0))
    swapped = (STAGE_CELLS[1], STAGE_CELLS[0]) + STAGE_CELLS[2:]
    with pytest.raises(ValueError, match="cell sum_44_4: input p4_1 is not made before it"):
        _wiring(swapped, STAGE_INPUTS)
