"""The checkpoint folder of one rank: epoch checkpoints, the best one, rotation."""
import glob
import os
import re

from ..checkpoint import save_checkpoint_atomic

CKPT_PREFIX = "retinanet"
CKPT_PATTERN = re.compile(rf"{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$")
BEST_NAME = f"{CKPT_PREFIX}-best.ckpt"


def epoch_checkpoint_name(epoch, steps_per_epoch):
    """The release's file name, which eval/export accept as is."""
    return f"{CKPT_PREFIX}-{epoch}_{steps_per_epoch}.ckpt"


def list_checkpoints(directory):
    """Epoch checkpoints in `directory`, oldest first, as (epoch, path)."""
    found = []
    for path in glob.glob(os.path.join(directory, f"{CKPT_PREFIX}-*.ckpt")):
        match = CKPT_PATTERN.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class CheckpointStore:
    """Writes the training cell's full state (network, BN statistics, optimizer) into `directory`."""

    def __init__(self, directory, train_cell, keep_max):
        self.directory = directory
        self.train_cell = train_cell
        self.keep_max = max(1, keep_max)

    def save_epoch(self, epoch, steps_per_epoch):
        path = save_checkpoint_atomic(self.train_cell, os.path.join(
            self.directory, epoch_checkpoint_name(epoch, steps_per_epoch)))
        for _, old in list_checkpoints(self.directory)[:-self.keep_max]:
            os.remove(old)
        return path

    def save_best(self):
        return save_checkpoint_atomic(self.train_cell, os.path.join(self.directory, BEST_NAME))
