"""The documented fine-tune (configs/finetune.yaml) on a small set, through train.py: the network is
the checkpoint's and is logged, and the step schedule is fitted to the run (epochs raised to
fit_min_steps, decay epochs scaled, warm-up at most a tenth: nasfpn/training/lr_schedule.py), with the
lr of every step as the rule gives it."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TINY, make_config
from tests.helpers.tiny_training import log_rows

SOURCE_NAMES = ["background", "circle", "square", "triangle"]


@pytest.fixture(scope="module")
def described_source(tmp_path_factory):
    """A TINY detector saved with its description (network options and class list), as this
    project's training writes them; its weights are random: this file checks what a fine-tune
    builds and schedules, bench/bench_finetune.py what it learns."""
    import mindspore as ms

    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.model_files.description import ModelDescription, checkpoint_entries

    cfg = make_config(*TINY, "--num_classes=4", "--cls_prior_probability=0.01")
    ms.set_seed(0)
    net = RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), 4)
    path = str(tmp_path_factory.mktemp("source") / "shapes.ckpt")
    save_checkpoint_atomic(
        net, path, checkpoint_entries(ModelDescription.of_sections(cfg.model, cfg.anchors, SOURCE_NAMES))
    )
    return path


@pytest.mark.slow  # a train.py process
def test_the_finetune_config_logs_the_inherited_network_and_fits_its_schedule(
    repo_root, described_source, tiny_mindrecord, tmp_path
):
    """8 images at batch 2: 4 steps an epoch; --epoch_size=2 (8 steps) under --fit_min_steps=16 ->
    4 epochs; [8, 11] (past the 2-epoch run: read as written for 12) -> round(2.67), round(3.67)
    clamped to 3 -> [3]; warm-up 100 -> floor(0.1 x 16) = 1. No network option is given: all are the
    checkpoint's (TINY), not default_config.yaml's ResNet-50 / 7 stages / 640."""
    mindrecord_dir, coco_root = tiny_mindrecord
    ckpt = tmp_path / "ckpt"
    run = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config_path=configs/finetune.yaml",
            f"--pre_trained={described_source}",
            f"--mindrecord_dir={mindrecord_dir}",
            f"--coco_root={coco_root}",
            "--num_classes=4",
            "--batch_size=2",
            "--epoch_size=2",
            "--fit_min_steps=16",
            "--num_parallel_workers=1",
            f"--save_checkpoint_path={ckpt}",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert (
        f"network inherited from {described_source}: ResNet-18 backbone, 1 NAS-FPN stage(s) x 64 channels, "
        "1 head conv(s), img_shape [128, 128] (from the checkpoint: backbone_depth, fpn_stages, "
        "fpn_channels, head_convs, img_shape; none given here)"
    ) in output, output[-3000:]
    assert (
        "schedule fitted to the run: epoch_size 2 -> 4 (a run of at least fit_min_steps 16 steps; 4 an "
        "epoch); lr_decay_epochs [8, 11] -> [3] (written for 12 epochs, the run has 4: scaled by 4/12); "
        "warm-up 100 -> 1 steps (at most 0.1 of the run's 16 steps = epoch_size 4 x 4)"
    ) in output, output[-3000:]
    rows = log_rows(os.path.join(ckpt, "ckpt_0", "train_log.csv"))
    lr = np.array([float(row["lr"]) for row in rows])
    peak = make_config(f"--config_path={os.path.join(repo_root, 'configs', 'finetune.yaml')}").lr
    # step 0: warm-up start (0.1 x lr); steps 1..11 lr; epoch 3 (steps 12..15) lr x 0.1
    expected = [0.1 * peak] + [peak] * 11 + [0.1 * peak] * 4
    np.testing.assert_allclose(lr, expected, rtol=1e-6)  # float32 lr as logged
