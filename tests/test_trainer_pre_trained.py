"""Training paths checked through train.py and the files it writes (train_log.csv, checkpoints):
--pre_trained with and without --filter_weight (where the schedule starts, which weights are
loaded) and a resume that lands in the middle of an epoch."""

import csv
import math
import os

import mindspore as ms
import numpy as np
import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import run_script

pytestmark = pytest.mark.slow  # each test runs train.py

IMAGES = 8
ARGS = TINY + (
    "--num_classes=4",
    "--num_parallel_workers=1",
    "--lr_scale_by_batch=false",
    "--grad_clip_norm=10",
    "--lr=1e-4",
    "--keep_checkpoint_max=1",
    # phase 1 and 2 of the warm-up one epoch each, phases 3-5 off, then the cosine
    "--warmup_epochs1=1",
    "--warmup_epochs2=1",
    "--warmup_epochs3=0",
    "--warmup_epochs4=0",
    "--warmup_epochs5=0",
)
LR_MAX, LR_INIT, LR_END_RATE = 1e-4, 1e-6, 5e-3
CLASS_HEAD = "network.head.multi_cls_layers."
OFFSET = 0.3  # added to every pre-trained conv weight: far outside the fresh init's +-0.04


def expected_lr(step, steps_per_epoch, total_steps):
    """The schedule for warm-up epochs (1, 1, 0, 0, 0), typed from the formula: phase 1 from
    lr_init to lr_max * 1e-4 / 3, phase 2 from 1e-4 of the lr asked for (lr_max here: no batch
    scaling) to lr_max * 1e-3, then the cosine to lr_end."""
    b1, b2 = steps_per_epoch, 2 * steps_per_epoch
    if step < b1:
        return LR_INIT * (b1 - step) / b1 + LR_MAX * 1e-4 / 3 * step / b1
    if step < b2:
        return 1e-4 * LR_MAX * (b2 - step) / (b2 - b1) + LR_MAX * 1e-3 * (step - b1) / (b2 - b1)
    lr_end = LR_END_RATE * LR_MAX
    return lr_end + (LR_MAX - lr_end) * (1 + math.cos(math.pi * (step - b2) / (total_steps - b2))) / 2


@pytest.fixture(scope="module")
def mindrecord_dir(tmp_path_factory):
    from nasfpn.data.converters import Summary, coco_samples, write_mindrecord
    from nasfpn.data.embedded import generate_embedded_dataset

    root = generate_embedded_dataset(str(tmp_path_factory.mktemp("d") / "coco"), IMAGES, 2, 96, seed=3)
    out = str(tmp_path_factory.mktemp("mr"))
    write_mindrecord(
        coco_samples(
            os.path.join(root, "annotations", "instances_train2017.json"),
            os.path.join(root, "train2017"),
            True,
            Summary(),
        ),
        out,
        "retinanet.mindrecord",
        num_shards=2,
        progress=False,
    )
    return out


def train(repo_root, *args):
    run = run_script("train.py", ARGS, args, repo_root, timeout=500)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def log_rows(ckpt_root):
    with open(os.path.join(ckpt_root, "ckpt_0", "train_log.csv")) as f:
        return list(csv.DictReader(f))


def conv_weights(path):
    return {
        k: v.asnumpy()
        for k, v in ms.load_checkpoint(path).items()
        if k.startswith("network.") and k.endswith(".weight")
    }


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A checkpoint of the tiny network whose conv weights are the fresh init + OFFSET."""
    from nasfpn.model import RetinaNetWithLoss, build_detector

    cfg = make_config(*ARGS)
    net = RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), cfg.num_classes)
    for param in net.get_parameters():
        if param.name.endswith(".weight"):
            param.set_data(ms.Tensor(param.asnumpy() + np.float32(OFFSET)))
    path = str(tmp_path_factory.mktemp("pre") / "pretrained.ckpt")
    ms.save_checkpoint(net, path)
    return path


@pytest.mark.parametrize("filter_weight", [False, True])
def test_pre_trained_starts_the_schedule_after_its_epochs(
    repo_root, mindrecord_dir, pretrained, tmp_path, filter_weight
):
    batch, epochs, done = 2, 3, 1
    steps_per_epoch = IMAGES // batch
    train(
        repo_root,
        f"--mindrecord_dir={mindrecord_dir}",
        f"--save_checkpoint_path={tmp_path}",
        f"--batch_size={batch}",
        f"--epoch_size={epochs}",
        f"--pre_trained={pretrained}",
        f"--pre_trained_epoch_size={done}",
        f"--filter_weight={filter_weight}",
    )
    rows = log_rows(tmp_path)
    first = done * steps_per_epoch
    total = epochs * steps_per_epoch
    assert [int(r["global_step"]) for r in rows] == list(range(first + 1, total + 1))
    assert [int(r["epoch"]) for r in rows] == [
        e for e in range(done + 1, epochs + 1) for _ in range(steps_per_epoch)
    ]
    # Row k (global step k) trained with the lr of step k - 1.
    np.testing.assert_allclose(
        [float(r["lr"]) for r in rows],
        [expected_lr(s, steps_per_epoch, total) for s in range(first, total)],
        rtol=1e-5,
    )
    final = conv_weights(str(tmp_path / "ckpt_0" / f"retinanet-{epochs}_{steps_per_epoch}.ckpt"))
    start = conv_weights(pretrained)
    assert final.keys() == start.keys()
    # lr <= 1e-4 and gradients clipped to norm 10 move a weight by far less than 0.05.
    for name, value in final.items():
        if filter_weight and name.startswith(CLASS_HEAD):
            # Not loaded: still the fresh init (|w| <= 2 * 0.02), nowhere near the file's values.
            assert np.abs(value).max() < 0.05 and np.abs(start[name]).min() > OFFSET - 0.05, name
        else:
            np.testing.assert_allclose(value, start[name], rtol=0, atol=0.05, err_msg=name)
    assert any(n.startswith(CLASS_HEAD) for n in final)
