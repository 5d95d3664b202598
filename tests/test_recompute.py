"""Activation recompute: the same losses, weights and BatchNorm running statistics as `none`, the
same parameter names, and only the chosen parts marked."""
import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from src.model import build_detector
from src.model.recompute import RECOMPUTE_CHOICES, apply_recompute, recompute_cells
from tests.conftest import TINY, make_config
from tests.helpers.training_state import assert_states_match, state_of

STEPS = 3
# Small enough for float32 differences to stay rounding-sized over STEPS steps. This loss (focal
# terms summed over ~3k anchors, divided by a handful of matches) has curvature ~5e3 at the start:
# at lr 1e-2 a 1-ulp difference grows 20-100x per step (measured: 2e-5 -> 4e-4 -> 5e-2 of the
# momenta between two CPU kernels' orders), at 1e-4 by at most 1 + lr * 5e3 = 1.5x.
LR = 1e-4


def _batch(cfg):
    from src.boxes import AnchorMatcher, Anchors, AnchorSpec
    matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)))
    target = matcher.encode(np.array([[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.9, 0.9]], np.float32), [1, 3])
    images = np.random.default_rng(0).normal(size=(2, 3, *cfg.img_shape)).astype(np.float32)
    return [ms.Tensor(images)] + [ms.Tensor(np.stack([target[k]] * 2)) for k in range(3)]


def _train(cfg, which):
    """Losses of STEPS training steps (graph mode, BN in training mode), the initial and the final
    state."""
    from src.model import RetinaNetWithLoss
    from src.training.train_step import TrainStep, build_optimizer
    ms.set_seed(0)
    detector = build_detector(cfg)
    apply_recompute(detector, which)
    net = RetinaNetWithLoss(detector, cfg.num_classes)
    step = TrainStep(net, build_optimizer(net, np.full(STEPS, LR, np.float32)), 1024.0,
                     grad_clip_norm=10.0)
    step.set_train()
    initial = state_of(step)
    batch = _batch(cfg)
    losses = [float(step(*batch)[0].asnumpy()) for _ in range(STEPS)]
    return losses, initial, state_of(step)


@pytest.fixture(scope="module")
def baseline():
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = make_config(*TINY, "--num_classes=4")
    yield cfg, _train(cfg, "none")
    ms.set_context(mode=mode)


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
    detector = build_detector(cfg)
    names = [p.name for p in detector.get_parameters()]
    expected_parts = {"none": set(), "backbone": {"backbone"}, "neck": {"neck"},
                      "all": {"backbone", "neck", "head"}}
    for which in RECOMPUTE_CHOICES:
        marked = {id(cell) for cell in recompute_cells(detector, which)}
        parts = {name.split(".")[0] for name, cell in detector.cells_and_names() if id(cell) in marked}
        assert parts == expected_parts[which], which
    # TINY: ResNet-18 has 8 blocks; 1 NAS-FPN stage of 9 cells + 3 laterals + 2 extra levels;
    # 5 levels x (box, class) subnets
    counts = {which: len(recompute_cells(detector, which)) for which in RECOMPUTE_CHOICES}
    assert counts == {"none": 0, "backbone": 8, "neck": 9 + 3 + 2, "all": 8 + 14 + 10}
    assert len({id(c) for c in recompute_cells(detector, "all")}) == 32

    backbone_only = build_detector(cfg)
    assert apply_recompute(backbone_only, "backbone") == 8
    # MindSpore's flag for a cell marked by Cell.recompute()
    # (the flag is passed on to the cells inside a marked block)
    marked = [name for name, cell in backbone_only.cells_and_names() if cell._has_config_recompute]
    assert sorted({".".join(name.split(".")[:3]) for name in marked}) == [
        f"backbone.layer{l}.{b}" for l in range(1, 5) for b in range(2)]
    assert "backbone.layer1.0" in marked and "backbone.layer1.0.conv1" in marked

    count = apply_recompute(detector, "all")
    assert count == len(recompute_cells(detector, "all")) > 0
    assert [p.name for p in detector.get_parameters()] == names
    batch_norms = [inner for cell in recompute_cells(detector, "all")
                   for _, inner in cell.cells_and_names() if isinstance(inner, nn.BatchNorm2d)]
    assert batch_norms and all(bn.bn_train.attrs.get("recompute") is False for bn in batch_norms)
    with pytest.raises(ValueError, match="recompute must be one of"):
        recompute_cells(detector, "some")
