"""Gradient accumulation (accumulate_steps K): K batches of B images give the update of one batch of
K x B images; everything counts optimizer steps; a run stopped inside an accumulation cycle resumes
at its last optimizer step."""
import os

import mindspore as ms
import numpy as np
import pytest

from src.training.lr_schedule import release_lr_schedule
from tests.conftest import TINY, make_config
from tests.helpers.tiny_training import (SHORT_SCHEDULE, TRAIN_ARGS, build_tiny_mindrecord, log_rows,
                                         run_train)
from tests.helpers.training_state import assert_states_match, state_of

IMAGES = 4        # per optimizer step in the equivalence test
# Small enough for float32 differences to stay rounding-sized: the loss's curvature is ~5e3 at the
# start (see tests/test_recompute.py), so a difference grows by at most 1 + LR * 5e3 = 1.5x a step
# (at 1e-2: 20-100x, and the comparison would measure that chaos, not the accumulation).
LR = 1e-4


@pytest.fixture(scope="module")
def graph_mode():
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=mode)


def _fixed_batches(cfg, steps):
    """`steps` batches of IMAGES random images with two boxes each (the same count of positive
    anchors in every image, so the mean of per-half losses equals the loss of the whole batch)."""
    from src.boxes import AnchorMatcher, Anchors, AnchorSpec
    matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)))
    target = matcher.encode(np.array([[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.9, 0.9]], np.float32), [1, 3])
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(steps):
        images = rng.normal(size=(IMAGES, 3, *cfg.img_shape)).astype(np.float32)
        batches.append([images] + [np.stack([target[k]] * IMAGES) for k in range(3)])
    return batches


def _train_step(cfg, accumulate_steps):
    """A fresh network (same seed: same initial weights) with BatchNorm frozen in eval mode, so a
    batch's statistics do not depend on how it is split."""
    from src.model import RetinaNetWithLoss, build_detector
    from src.training.train_step import TrainStep, build_optimizer
    ms.set_seed(0)
    net = RetinaNetWithLoss(build_detector(cfg), cfg.num_classes)
    step = TrainStep(net, build_optimizer(net, np.full(8, LR, np.float32)), loss_scale=1024.0,
                     grad_clip_norm=10.0, accumulate_steps=accumulate_steps)
    step.set_train()
    net.network.set_train(False)
    return net, step


def _tensors(arrays, part, parts):
    size = IMAGES // parts
    return [ms.Tensor(a[part * size:(part + 1) * size]) for a in arrays]


@pytest.mark.slow
def test_k_batches_of_b_update_like_one_batch_of_k_times_b(graph_mode):
    cfg = make_config(*TINY, "--num_classes=4")
    batches = _fixed_batches(cfg, steps=2)
    whole_net, whole = _train_step(cfg, 1)
    split_net, split = _train_step(cfg, 2)
    buffers = [p for p in split.get_parameters() if p.name.startswith("accumulated.")]
    assert len(buffers) == len(split_net.trainable_params())
    initial = state_of(whole)
    for arrays in batches:
        whole_loss = float(whole(*_tensors(arrays, 0, 1))[0].asnumpy())
        first = float(split(*_tensors(arrays, 0, 2), False)[0].asnumpy())
        # after a micro-step: the weights have not moved, the buffers hold that batch's gradients
        assert any(np.abs(b.asnumpy()).sum() > 0 for b in buffers)
        second = float(split(*_tensors(arrays, 1, 2), True)[0].asnumpy())
        # Losses are sums of positive terms (no cancellation) over per-image activations that a
        # kernel for batch 2 may round in another order than one for batch 4: the forward's
        # relative error, ~D sqrt(K) u = 25 convolutions x sqrt(9 x 512) x 6e-8 = 1e-4.
        np.testing.assert_allclose((first + second) / 2, whole_loss, rtol=1e-4, atol=0)
        assert all(not b.asnumpy().any() for b in buffers)  # cleared by the update
    names = {entry["name"] for entry in split.checkpoint_parameters()}
    assert names == {p.name for p in whole.get_parameters()}  # no buffers in checkpoints
    split_state = {name: value for name, value in state_of(split).items() if name in names}
    # The mean of two half-batch gradients is the whole batch's gradient summed in another order:
    # 1e-4 per step as the loss; over 2 steps (m2 = g2 + .9 g1, growth <= 1.5x, see LR) at most
    # (1 + .9 x 1.5) x 1e-4 = 2.4e-4 of each tensor's move (tests/helpers/training_state.py):
    # c = 1e-3. A missing mean (factor 2) or a dropped micro-batch (~0.5) is far outside.
    assert_states_match(split_state, state_of(whole), initial, c=1e-3, steps=2)
    moved = max(float(np.abs(m.asnumpy()).max()) for m in whole.optimizer.moments)
    assert moved > 1e-2  # two real updates happened (momentum holds the gradients)


def test_accumulate_steps_must_be_a_count():
    from src.config import ConfigError
    from src.training.trainer import optimizer_steps_per_epoch
    with pytest.raises(ConfigError, match=r"^--accumulate_steps: expected >= 1, got 0$"):
        make_config("--accumulate_steps=0")
    with pytest.raises(ConfigError, match=r"^--accumulate_steps: expected an integer, got 1\.5$"):
        make_config("--accumulate_steps=1.5")
    assert optimizer_steps_per_epoch(7, 3) == 2
    from src.errors import UserError
    with pytest.raises(UserError, match=r"--accumulate_steps=5: an epoch has only 4 batches per device"):
        optimizer_steps_per_epoch(4, 5)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return build_tiny_mindrecord(str(tmp_path_factory.mktemp("acc")))[0]


@pytest.mark.slow
def test_train_py_counts_optimizer_steps_and_scales_lr_by_the_effective_batch(repo_root, tiny_data,
                                                                              tmp_path):
    # 8 images, batch 2: 4 batches per epoch, 2 optimizer steps at K=2 (global batch 4)
    run = run_train(repo_root, f"--mindrecord_dir={tiny_data}", f"--save_checkpoint_path={tmp_path}",
                    "--epoch_size=2", "--accumulate_steps=2", "--lr_scale_by_batch=true", "--lr=0.64",
                    "--keep_checkpoint_max=1",
                    *SHORT_SCHEDULE)
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "ckpt_0"
    assert sorted(os.listdir(folder)) == ["checkpoints.json", "retinanet-2_2.ckpt", "train_log.csv"]
    rows = log_rows(folder / "train_log.csv")
    assert [int(r["global_step"]) for r in rows] == [1, 2, 3, 4]
    lr_max = 0.64 * (2 * 1 * 2) / 128  # batch x devices x K over the release's 128
    np.testing.assert_allclose([float(r["lr"]) for r in rows],
                               release_lr_schedule(4, 2, lr_max, warmup_epochs=(1, 0, 0, 0, 1), lr_asked=0.64),
                               rtol=1e-5)
    state = ms.load_checkpoint(str(folder / "retinanet-2_2.ckpt"))
    assert int(state["global_step"].asnumpy()[0]) == 4
    assert not any(name.startswith("accumulated.") for name in state)
    assert "global batch 4" in run.stderr


class _Interrupted(Exception):
    pass


class _StopsAfter:
    """The dataset, but the run dies before its batch number `batches` (counted over all epochs)."""

    def __init__(self, dataset, batches):
        self.dataset, self.batches, self.seen = dataset, batches, 0

    def get_dataset_size(self):
        return self.dataset.get_dataset_size()

    def create_tuple_iterator(self, num_epochs):
        inner = self.dataset.create_tuple_iterator(num_epochs=num_epochs)
        outer = self

        class Epochs:
            def __iter__(self):
                for batch in inner:  # one epoch per iter(), as MindSpore's iterator
                    if outer.seen == outer.batches:
                        raise _Interrupted()
                    outer.seen += 1
                    yield batch
        return Epochs()


def _trainer(data, ckpt, resume, start_epoch=0):
    from src.data.converters import find_mindrecord
    from src.data.pipeline import create_train_dataset
    from src.training.trainer import Trainer
    cfg = make_config(*TRAIN_ARGS, f"--mindrecord_dir={data}", f"--save_checkpoint_path={ckpt}",
                      "--epoch_size=2", "--accumulate_steps=2", f"--resume={resume}", *SHORT_SCHEDULE)
    ms.set_seed(cfg.seed)
    record = find_mindrecord(data, "retinanet.mindrecord")
    dataset = create_train_dataset(record, cfg, cfg.batch_size, start_epoch=start_epoch)
    trainer = Trainer(cfg, dataset.get_dataset_size())
    return trainer, dataset, record, cfg


@pytest.mark.slow
def test_a_run_stopped_inside_an_accumulation_cycle_resumes_at_its_last_optimizer_step(
        graph_mode, tiny_data, tmp_path):
    from src.data.pipeline import create_train_dataset
    reference, dataset, _, _ = _trainer(tiny_data, tmp_path / "whole", False)
    reference.restore()
    reference.fit(dataset)
    # Epoch 1 = batches 0-3 (optimizer steps 1, 2, checkpoint); the run dies after batch 4, the
    # first half of step 3's cycle.
    stopped, dataset, _, _ = _trainer(tiny_data, tmp_path / "cut", False)
    stopped.restore()
    with pytest.raises(_Interrupted):
        stopped.fit(_StopsAfter(dataset, 5))
    resumed, _, record, cfg = _trainer(tiny_data, tmp_path / "cut", True)
    start = resumed.restore()
    assert start == 2  # the last optimizer step before the cut, not the half cycle
    epoch = start // resumed.steps_per_epoch
    resumed.fit(create_train_dataset(record, cfg, cfg.batch_size, start_epoch=epoch))
    whole = ms.load_checkpoint(str(tmp_path / "whole" / "ckpt_0" / "retinanet-2_2.ckpt"))
    cut = ms.load_checkpoint(str(tmp_path / "cut" / "ckpt_0" / "retinanet-2_2.ckpt"))
    assert sorted(whole) == sorted(cut)
    for name in whole:
        np.testing.assert_array_equal(cut[name].asnumpy(), whole[name].asnumpy(), err_msg=name)
    rows = log_rows(tmp_path / "cut" / "ckpt_0" / "train_log.csv")
    assert [int(r["global_step"]) for r in rows] == [1, 2, 3, 4]


class _TinyLoss(ms.nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = ms.nn.Dense(3, 2)

    def construct(self, x, gt_loc=None, gt_label=None, num_match=None):
        return self.dense(x).sum()


@pytest.mark.parametrize("bad", [None, "nan", "inf", "inf and -inf", "huge"])
def test_the_cpu_overflow_check_flags_exactly_the_non_finite_gradients(bad):
    from src.training.train_step import TrainStep, build_optimizer
    net = _TinyLoss()
    step = TrainStep(net, build_optimizer(net, np.full(2, 0.1, np.float32)))
    assert step.cpu_target
    grads = [np.ones(p.shape, np.float32) for p in net.trainable_params()]
    if bad == "nan":
        grads[0][0, 1] = np.nan
    elif bad == "inf":
        grads[1][1] = np.inf
    elif bad == "inf and -inf":  # a sum where they would cancel into NaN, not a finite number
        grads[0][0, 0], grads[0][1, 2] = np.inf, -np.inf
    elif bad == "huge":  # finite values whose sum is still representable
        grads[0][:] = 1e37
    status = ms.Tensor([0] * 8, ms.int32)
    flagged = bool(step.check_overflow(status, tuple(ms.Tensor(g) for g in grads)).asnumpy())
    assert flagged == (bad in ("nan", "inf", "inf and -inf"))
