"""Tiny training runs of train.py as real processes: an 8-image embedded MindRecord (4 steps per
epoch at batch 2), a light network, and helpers to read what a run left behind."""

import csv
import os
import subprocess
import sys

from tests.conftest import TINY

TRAIN_ARGS = TINY + (
    "--num_classes=4",
    "--batch_size=2",
    "--num_parallel_workers=1",
    "--lr_scale_by_batch=false",
    "--lr=0.01",
    "--grad_clip_norm=10",
)
# One warm-up epoch then the cosine: lr changes every step, so a step taken twice or skipped shows.
SHORT_SCHEDULE = (
    "--warmup_epochs1=1",
    "--warmup_epochs2=0",
    "--warmup_epochs3=0",
    "--warmup_epochs4=0",
    "--warmup_epochs5=1",
)
STEPS_PER_EPOCH = 4


def build_tiny_mindrecord(root_dir):
    """Train and eval MindRecords of the embedded set (8 train / 4 val images of 96 px)."""
    from nasfpn.data.converters import Summary, coco_samples, write_mindrecord
    from nasfpn.data.embedded import generate_embedded_dataset

    root = generate_embedded_dataset(os.path.join(root_dir, "coco"), 8, 4, 96, seed=1)
    out = os.path.join(root_dir, "mr")
    for split, prefix, training in (
        ("train2017", "retinanet.mindrecord", True),
        ("val2017", "retinanet_eval.mindrecord", False),
    ):
        write_mindrecord(
            coco_samples(
                os.path.join(root, "annotations", f"instances_{split}.json"),
                os.path.join(root, split),
                training,
                Summary(),
            ),
            out,
            prefix,
            num_shards=2,
            progress=False,
        )
    return out, root


def lineage_args(mindrecord_dir, save_checkpoint_path, epochs, keep=1):
    """The options of a checkpoint lineage that later runs resume: SHORT_SCHEDULE, `epochs` epochs."""
    return (
        f"--mindrecord_dir={mindrecord_dir}",
        f"--save_checkpoint_path={save_checkpoint_path}",
        f"--epoch_size={epochs}",
        f"--keep_checkpoint_max={keep}",
        *SHORT_SCHEDULE,
    )


STALE_ROWS = (1, 2, 3)  # logged by a run that died before its first checkpoint


def first_epoch_after_a_dead_run(repo_root, mindrecord_dir, save_checkpoint_path):
    """One epoch (4 steps) of train.py with --resume=True into a rank folder that holds no
    checkpoint, only the train_log.csv of a run that died before its first one (STALE_ROWS).
    Returns (rank folder, the finished process)."""
    folder = os.path.join(str(save_checkpoint_path), "ckpt_0")
    os.makedirs(folder)
    with open(os.path.join(folder, "train_log.csv"), "w") as f:
        f.write("global_step,epoch,loss,lr,seconds\n" + "".join(f"{s},1,9.0,0.001,1.0\n" for s in STALE_ROWS))
    run = run_train(repo_root, *lineage_args(mindrecord_dir, save_checkpoint_path, 1), "--resume=True")
    return folder, run


def train_command(*args):
    return [sys.executable, "train.py", *TRAIN_ARGS, *args]


def run_train(repo_root, *args, timeout=400, **popen_args):
    return subprocess.run(
        train_command(*args), cwd=repo_root, capture_output=True, text=True, timeout=timeout, **popen_args
    )


def log_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def logged_steps(path):
    return [int(row["global_step"]) for row in log_rows(path)]


def temporaries(directory):
    """Files in `directory` that are not final outputs (any temporary name)."""
    return sorted(n for n in os.listdir(directory) if n.startswith(".tmp") or n.endswith(".tmp"))
