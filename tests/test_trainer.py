"""Training: the schedule, loss going down, resume, NaN guard, 2-process msrun on CPU."""
import math
import os
import re
import subprocess

import mindspore as ms
import numpy as np
import pytest

from src.training.lr_schedule import release_lr_schedule
from tests.conftest import TINY, make_config
from tests.helpers.tiny_training import TRAIN_ARGS, build_tiny_mindrecord, log_rows, run_train


def reference_lr(total, spe, lr_max, lr_init=1e-6, end_rate=5e-3, epochs=(2, 5, 23, 60, 160)):
    """The schedule of docs/conventions.md#training written out step by step."""
    b1, b2, b3, b4, b5 = np.cumsum(epochs) * spe
    out = []
    for i in range(total):
        if i < b1:
            lr = lr_init * (b1 - i) / b1 + lr_max * 1e-4 * i / (3 * b1)
        elif i < b2:
            lr = 1e-5 * (b2 - i) / (b2 - b1) + lr_max * 1e-3 * (i - b1) / (b2 - b1)
        elif i < b3:
            lr = 1e-4 * (b3 - i) / (b3 - b2) + lr_max * 1e-2 * (i - b2) / (b3 - b2)
        elif i < b4:
            lr = 1e-3 * (b4 - i) / (b4 - b3) + lr_max * 1e-1 * (i - b3) / (b4 - b3)
        elif i < b5:
            lr = 1e-2 * (b5 - i) / (b5 - b4) + lr_max * 1.0 * (i - b4) / (b5 - b4)
        else:
            lr_end = end_rate * lr_max
            lr = lr_end + (lr_max - lr_end) * (1 + math.cos(math.pi * (i - b5) / (total - b5))) / 2
        out.append(max(lr, 0.0))
    return np.array(out, np.float32)


@pytest.mark.parametrize("epochs, spe, lr_max", [(300, 3, 0.1), (300, 1, 0.0125), (120, 2, 0.1)])
def test_lr_schedule_matches_the_release_formula(epochs, spe, lr_max):
    ours = release_lr_schedule(epochs * spe, spe, lr_max)
    ref = reference_lr(epochs * spe, spe, lr_max)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)
    assert ours.dtype == np.float32 and len(ours) == epochs * spe


def test_lr_schedule_short_warmup_and_peak():
    lr = release_lr_schedule(10 * 4, 4, 0.02, warmup_epochs=(0, 0, 0, 0, 1))
    np.testing.assert_allclose(lr[0], 1e-2, rtol=1e-6)          # phase 5 starts at 1e-2
    np.testing.assert_allclose(lr[4], 0.02, rtol=1e-6)          # cosine starts at lr_max
    assert np.all(np.diff(lr[4:]) <= 0) and lr[-1] > 0.005 * 0.02


def test_lr_scales_with_the_global_batch():
    from src.training.lr_schedule import effective_lr
    assert effective_lr(make_config("--batch_size=16"), 16) == pytest.approx(0.0125)
    assert effective_lr(make_config("--lr_scale_by_batch=false"), 16) == 0.1


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    from src.boxes import AnchorMatcher, Anchors, AnchorSpec
    from src.model import RetinaNetWithLoss, build_detector
    from src.training.train_step import TrainStep, build_optimizer
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    cfg = make_config(*TINY, "--num_classes=4")
    matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)))
    rng = np.random.default_rng(0)
    targets = [matcher.encode(np.array([[0.1, 0.1, 0.5, 0.6], [0.5, 0.4, 0.9, 0.9]], np.float32), [1, 3])
               for _ in range(2)]
    batch = [ms.Tensor(rng.normal(size=(2, 3, 128, 128)).astype(np.float32))]
    batch += [ms.Tensor(np.stack([t[k] for t in targets])) for k in range(3)]
    net = RetinaNetWithLoss(build_detector(cfg), cfg.num_classes)
    step = TrainStep(net, build_optimizer(net, np.full(12, 0.01, np.float32)), loss_scale=1024.0,
                     grad_clip_norm=10.0)
    step.set_train()
    losses = [float(step(*batch)[0].asnumpy()) for _ in range(12)]
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses


@pytest.fixture(scope="module")
def tiny_mindrecord(tmp_path_factory):
    return build_tiny_mindrecord(str(tmp_path_factory.mktemp("d")))


def _train(repo_root, *args, timeout=400):
    return run_train(repo_root, *args, timeout=timeout)


def _log_rows(path):
    return log_rows(path)


@pytest.mark.slow
def test_resume_continues_step_count_and_lr(repo_root, tiny_mindrecord, tmp_path):
    data, _ = tiny_mindrecord
    ckpt = tmp_path / "ck"
    common = (f"--mindrecord_dir={data}", f"--save_checkpoint_path={ckpt}", "--keep_checkpoint_max=1",
              "--warmup_epochs1=1", "--warmup_epochs2=0", "--warmup_epochs3=0", "--warmup_epochs4=0",
              "--warmup_epochs5=1")
    first = _train(repo_root, *common, "--epoch_size=1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = _train(repo_root, *common, "--epoch_size=3", "--resume=True")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "at step 4" in second.stderr
    rows = _log_rows(ckpt / "ckpt_0" / "train_log.csv")
    assert [int(r["global_step"]) for r in rows] == list(range(1, 13))  # 4 steps/epoch, 3 epochs
    expected = release_lr_schedule(12, 4, 0.01, warmup_epochs=(1, 0, 0, 0, 1), lr_asked=0.01)
    np.testing.assert_allclose([float(r["lr"]) for r in rows], expected, rtol=1e-5)
    assert sorted(os.listdir(ckpt / "ckpt_0")) == ["checkpoints.json", "retinanet-3_4.ckpt", "train_log.csv"]
    # The training checkpoint is release-style: it loads strictly into the inference network.
    from src.checkpoint import load_checkpoint_into
    from src.inference.build import build_inference_network
    net = build_inference_network(make_config(*TRAIN_ARGS))
    ignored = load_checkpoint_into(net, str(ckpt / "ckpt_0" / "retinanet-3_4.ckpt"))
    assert "global_step" in ignored and any(n.startswith("moments.network.") for n in ignored)


@pytest.mark.slow
def test_non_finite_loss_stops_without_a_checkpoint(repo_root, tiny_mindrecord, tmp_path):
    data, _ = tiny_mindrecord
    run = _train(repo_root, f"--mindrecord_dir={data}", f"--save_checkpoint_path={tmp_path}",
                 "--epoch_size=2", "--lr=1e6", "--grad_clip_norm=0", "--warmup_epochs1=0",
                 "--warmup_epochs2=0", "--warmup_epochs3=0", "--warmup_epochs4=0", "--warmup_epochs5=0")
    assert run.returncode == 1
    assert ("non-finite loss or gradients); training stopped and wrote no checkpoint of this state; "
            "no checkpoint was written by this run. Lower --lr") in run.stderr
    assert sorted(os.listdir(tmp_path / "ckpt_0")) == ["train_log.csv"]


@pytest.mark.slow
def test_msrun_two_processes_keep_identical_weights(repo_root, tiny_mindrecord, tmp_path):
    data, _ = tiny_mindrecord
    run = subprocess.run(["bash", "scripts/run_distribute_train_cpu.sh", "2", data, *TRAIN_ARGS,
                          "--epoch_size=2", "--batch_size=2", "--accumulate_steps=2",
                          f"--save_checkpoint_path={tmp_path}"],
                         cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    logs = re.search(r"logs in (\S+)", run.stdout).group(1)  # this run's own folder
    assert re.fullmatch(r"run_\d{8}-\d{6}(_\d+)?", os.path.basename(logs))
    for rank in (0, 1):  # each rank's lines say whose they are (they also meet in one console)
        worker_log = open(os.path.join(logs, f"worker_{rank}.log")).read()
        assert re.search(rf"^\d\d:\d\d:\d\d rank {rank} INFO epoch 1/2 ", worker_log, re.M), worker_log[-2000:]
    # 8 images / 2 ranks / batch 2 (batch >= 2: BatchNorm on the 1x1 P7 level needs two values)
    # = 2 batches per epoch: 1 optimizer step per epoch at accumulate_steps=2
    a = ms.load_checkpoint(str(tmp_path / "ckpt_0" / "retinanet-2_1.ckpt"))
    b = ms.load_checkpoint(str(tmp_path / "ckpt_1" / "retinanet-2_1.ckpt"))
    trainable = [k[len("moments."):] for k in a if k.startswith("moments.")]
    assert len(trainable) > 50
    for name in trainable:  # gradients are all-reduced, so every rank takes the same update
        np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy())
    assert int(a["global_step"].asnumpy()[0]) == 2
    assert not any(name.startswith("accumulated.") for name in a)
    init = ms.load_checkpoint(str(tmp_path / "ckpt_0" / "retinanet-2_1.ckpt"))
    assert any(np.abs(init[n].asnumpy()).sum() > 0 for n in trainable)


@pytest.mark.parametrize("option, expected", [
    ("--lr=-1", "--lr: expected > 0, got -1.0"),
    ("--lr=0", "--lr: expected > 0, got 0.0"),
    ("--batch_size=0", "--batch_size: expected >= 1, got 0"),
    ("--epoch_size=0", "--epoch_size: expected >= 1, got 0"),
    ("--keep_checkpoint_max=0", "--keep_checkpoint_max: expected >= 1, got 0"),
    ("--momentum=1", "--momentum: expected in [0, 1), got 1.0"),
    ("--weight_decay=-1e-4", "--weight_decay: expected >= 0, got -0.0001"),
    ("--lr_end_rate=1.5", "--lr_end_rate: expected in [0, 1] (a fraction of lr), got 1.5"),
])
def test_meaningless_training_values_are_config_errors(option, expected):
    from src.config import ConfigError
    with pytest.raises(ConfigError) as raised:
        make_config(option)
    assert str(raised.value) == expected


def test_train_py_refuses_a_negative_lr_before_touching_anything(repo_root, tmp_path):
    run = _train(repo_root, "--lr=-1", f"--save_checkpoint_path={tmp_path / 'ck'}",
                 f"--mindrecord_dir={tmp_path}")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == "error: --lr: expected > 0, got -1.0"
    assert os.listdir(tmp_path) == []
