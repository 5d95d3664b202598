"""Skipped updates under dynamic loss scaling (docs/training.md#loss-scaling-and-skipped-steps), forced
on CPU: train.py with a loss scale of 2^127 overflows its first steps' gradients (each overflow
halves the scale), and every step-dependent thing is checked against the rule:

- the steps taken (train_log.csv's global_step, checkpoint names, checkpoints.json, the epochs, the
  `step_num` entry of a checkpoint) count every step, skipped or not: the position in the data;
- the updates applied (the optimizer's `global_step` in a checkpoint) index the lr schedule, so the
  lr logged at a step is the schedule's value at the number of updates applied before it - the lr
  the optimizer used - and the EMA counts exactly those updates;
- resume continues both: the data after the last step taken, the schedule after the last update.
"""

import json
import os
import re

import mindspore as ms
import pytest

from nasfpn.training.lr_schedule import lr_schedule_from_config
from tests.conftest import make_config
from tests.helpers.tiny_training import (
    SHORT_SCHEDULE,
    STEPS_PER_EPOCH,
    TRAIN_ARGS,
    lineage_args,
    log_rows,
    run_train,
)

HUGE = str(2**127)  # float32's largest power of two: the scaled gradients overflow
SKIPPED = re.compile(r"step (\d+): non-finite gradients \(loss [^)]*\); update skipped")
OVERFLOW_ARGS = ("--loss_scale_type=dynamic", f"--loss_scale={HUGE}", "--ema=True")


def schedule(epochs):
    """The lr of each update of an `epochs`-epoch run of this lineage (4 steps of 2 images)."""
    cfg = make_config(*TRAIN_ARGS, *SHORT_SCHEDULE, f"--epoch_size={epochs}")
    return lr_schedule_from_config(cfg.schedule, STEPS_PER_EPOCH, 2)


def counters(path):
    """(steps taken, updates applied, EMA updates) a checkpoint records."""
    entries = ms.load_checkpoint(path)
    return tuple(
        int(entries[name].asnumpy().reshape(-1)[0]) for name in ("step_num", "global_step", "ema.updates")
    )


def check_log(rows, skipped, lr, first_step, first_update):
    """Each logged step's lr is lr[updates applied before it]; returns the updates after the last."""
    updates = first_update
    for row in rows:
        step = int(row["global_step"])
        assert row["lr"] == f"{float(lr[updates]):.9g}", (step, updates)
        updates += 0 if step in skipped else 1
    assert [int(r["global_step"]) for r in rows] == list(range(first_step + 1, first_step + len(rows) + 1))
    return updates


@pytest.fixture(scope="module")
def overflowed(repo_root, tiny_mindrecord, tmp_path_factory):
    """Two epochs whose first steps overflow, then --resume=True for a third."""
    root = tmp_path_factory.mktemp("overflow")
    first = run_train(repo_root, *lineage_args(tiny_mindrecord[0], root, 2, keep=3), *OVERFLOW_ARGS)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = log_rows(os.path.join(root, "ckpt_0", "train_log.csv"))
    second = run_train(
        repo_root, *lineage_args(tiny_mindrecord[0], root, 3, keep=3), *OVERFLOW_ARGS, "--resume=True"
    )
    assert second.returncode == 0, second.stderr[-3000:]
    return os.path.join(root, "ckpt_0"), first, rows, second


@pytest.mark.slow  # two train.py processes
def test_lr_ema_and_checkpoints_follow_the_applied_updates(overflowed):
    folder, first, rows, _ = overflowed
    skipped = {int(step) for step in SKIPPED.findall(first.stderr)}
    assert 1 <= len(skipped) < 2 * STEPS_PER_EPOCH, first.stderr[-3000:]  # some skipped, some applied
    applied = check_log(rows, skipped, schedule(2), 0, 0)
    assert applied == 2 * STEPS_PER_EPOCH - len(skipped)
    for epoch in (1, 2):
        taken = epoch * STEPS_PER_EPOCH
        updates = taken - len([s for s in skipped if s <= taken])
        assert counters(os.path.join(folder, f"retinanet-{epoch}_{STEPS_PER_EPOCH}.ckpt")) == (
            taken,
            updates,
            updates,
        )
    with open(os.path.join(folder, "checkpoints.json")) as f:
        recorded = [(c["file"], c["global_step"]) for c in json.load(f)["checkpoints"]]
    assert recorded[:2] == [("retinanet-1_4.ckpt", 4), ("retinanet-2_4.ckpt", 8)]  # steps taken


@pytest.mark.slow
def test_resume_after_skipped_updates_continues_the_data_and_the_schedule(overflowed):
    folder, first, rows, second = overflowed
    skipped = {int(step) for step in SKIPPED.findall(first.stderr)}
    applied_before = 2 * STEPS_PER_EPOCH - len(skipped)
    taken = 2 * STEPS_PER_EPOCH
    assert f"resumed from {folder}/retinanet-2_4.ckpt at step {taken} (epoch 2)" in second.stderr
    all_rows = log_rows(os.path.join(folder, "train_log.csv"))
    assert all_rows[:taken] == rows  # the first run's rows kept as they were
    later = {int(step) for step in SKIPPED.findall(second.stderr)}
    updates = check_log(all_rows[taken:], later, schedule(3), taken, applied_before)
    assert counters(os.path.join(folder, "retinanet-3_4.ckpt")) == (3 * STEPS_PER_EPOCH, updates, updates)
