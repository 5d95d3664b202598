"""The checkpoint folder of one rank (`<save_checkpoint_path>/ckpt_<rank>`).

What is in it:
- `retinanet-<epoch>_<step in epoch>.ckpt`: the full training state (network, BatchNorm
  statistics, optimizer moments, global step, with --ema the weights' moving average) and the
  model description (network options,
  class list: nasfpn/model_files/description.py), release file names that eval/export take as is;
  the step is the epoch's last (its steps per epoch) except for the checkpoint written when a
  signal stopped the run mid-epoch;
  beside the optimizer's `global_step` (updates applied) each holds `step_num`, the steps taken
  (skipped updates of a dynamic loss scale included: docs/training.md#loss-scaling-and-skipped-steps),
  and each ends with a CRC-32 (nasfpn/model_files/integrity.py);
- `retinanet-best.ckpt` with --eval_interval;
- `checkpoints.json`: the record of this lineage - the checkpoints written by the run that started
  in this folder and its resumed continuations, in the order written, each with its global step
  and the epoch shape it was trained with (steps per epoch, images per step), and the best eval
  score;
- `train_log.csv` (written by the CSV log hook).

Rules: a new run refuses a folder that already holds checkpoints (it would mix two runs); rotation
(keep_checkpoint_max) deletes only files named in the record, oldest first, never the newest; a
state with inf/NaN anywhere is not written.
"""

import glob
import json
import logging
import os
import re

from nasfpn.core.atomic import write_bytes_atomic
from nasfpn.model_files.checkpoint import (
    non_finite_parameters,
    remove_stale_temporaries,
    save_checkpoint_atomic,
)
from nasfpn.core.errors import TrainingError, UserError
from nasfpn.model_files.description import checkpoint_entries
from nasfpn.core.storage import megabytes, storage_error
from nasfpn.training.hooks import last_checkpoint_text

CKPT_PREFIX = "retinanet"
CKPT_PATTERN = re.compile(rf"{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$")
BEST_NAME = f"{CKPT_PREFIX}-best.ckpt"
RECORD_NAME = "checkpoints.json"
LOG_NAME = "train_log.csv"
# The steps taken (global_step of train_log.csv and checkpoints.json, skipped updates included),
# beside the optimizer's own `global_step` (updates applied); MindSpore's name for a step count,
# which every loader here already leaves out.
STEPS_TAKEN = "step_num"


class CheckpointFolderError(UserError):
    """A checkpoint folder that a new run must not write into."""


def epoch_checkpoint_name(epoch, step_in_epoch):
    """The release's file name (MindSpore's `<prefix>-<epoch>_<step in epoch>`), which eval/export
    accept as is."""
    return f"{CKPT_PREFIX}-{epoch}_{step_in_epoch}.ckpt"


def steps_per_epoch_from_name(path):
    """The steps per epoch an epoch-end checkpoint's name says (files written without a record of
    their epoch shape only ever ended epochs); None for another name."""
    match = CKPT_PATTERN.search(os.path.basename(path))
    return int(match.group(2)) if match else None


def checkpoints_by_name(directory):
    """Epoch checkpoints in `directory` by the (epoch, steps) in their names, oldest first (a folder
    written before the record existed)."""
    found = []
    for path in glob.glob(os.path.join(directory, f"{CKPT_PREFIX}-*.ckpt")):
        match = CKPT_PATTERN.search(os.path.basename(path))
        if match:
            found.append(((int(match.group(1)), int(match.group(2))), path))
    return [path for _, path in sorted(found)]


def any_checkpoints(directory):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, "*.ckpt")))


class LineageRecord:
    """checkpoints.json: [{"file", "global_step"}] in the order written, and the best eval result."""

    def __init__(self, path, checkpoints=(), best=None):
        self.path = path
        self.checkpoints = list(checkpoints)
        self.best = best

    @classmethod
    def load(cls, path):
        if not os.path.exists(path):
            return cls(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            checkpoints = [
                dict(c, file=str(c["file"]), global_step=int(c["global_step"])) for c in data["checkpoints"]
            ]
            return cls(path, checkpoints, data.get("best"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointFolderError(
                f"{path}: not a checkpoint record written by this trainer "
                f"({exc.__class__.__name__}: {exc}); move it away to resume "
                "by file names"
            ) from None

    def files(self):
        return [c["file"] for c in self.checkpoints]

    def add(self, name, global_step, epoch_shape=None):
        """Append `name` (a rewritten name moves to the end: it is the newest now)."""
        self.checkpoints = [c for c in self.checkpoints if c["file"] != name]
        self.checkpoints.append({"file": name, "global_step": int(global_step), **(epoch_shape or {})})

    def entry(self, name):
        return next((c for c in self.checkpoints if c["file"] == name), None)

    def drop_oldest(self, keep):
        """Remove all but the newest `keep` entries from the record; returns the removed names."""
        old, self.checkpoints = self.checkpoints[:-keep], self.checkpoints[-keep:]
        return [c["file"] for c in old]

    def save(self):
        text = json.dumps({"checkpoints": self.checkpoints, "best": self.best}, indent=1)
        write_bytes_atomic(self.path, (text + "\n").encode("utf-8"))


class CheckpointStore:
    """Writes the training cell's full state into `directory` and keeps the lineage record."""

    def __init__(
        self, directory, train_cell, keep_max, log=None, epoch_shape=None, description=None, average=None
    ):
        """`epoch_shape`: how this run's steps are made (steps_per_epoch, global_batch, batch_size,
        device_num, accumulate_steps), recorded with each checkpoint so a resumed run can tell
        whether its steps are the same ones. `description`: the ModelDescription every checkpoint
        written here carries (None: none). `average`: the WeightAverage of --ema (nasfpn/training/
        ema.py), saved beside the train cell's state (None: none)."""
        self.directory = directory
        self.train_cell = train_cell
        self.average = average
        self.keep_max = keep_max
        self.epoch_shape = dict(epoch_shape or {})
        self.description = description
        self.log = log or logging.getLogger("nasfpn")
        self.record = LineageRecord(os.path.join(directory, RECORD_NAME))

    # ---- start-up ---------------------------------------------------------------------------
    def open(self, resume):
        """Clear temporaries of killed saves; a new run refuses a folder holding checkpoints; a
        resumed run takes over the record. Returns the resume candidates, newest first."""
        removed, in_use = remove_stale_temporaries(self.directory, (CKPT_PREFIX, RECORD_NAME, LOG_NAME))
        for path in removed:
            self.log.warning("removed %s, left by an interrupted save", path)
        for path in in_use:
            self.log.warning("%s belongs to a save of a process still running; left alone", path)
        present = any_checkpoints(self.directory)
        if not resume:
            if present:
                shown = ", ".join(present[:6]) + (
                    f" ... (+{len(present) - 6} more)" if len(present) > 6 else ""
                )
                raise CheckpointFolderError(
                    f"{self.directory} already holds checkpoints ({shown}); a new run there would mix "
                    "its checkpoints and train_log.csv with theirs. Continue that run with "
                    "--resume=True, or give another --save_checkpoint_path."
                )
            return []
        self.record = LineageRecord.load(self.record.path)
        if self.record.checkpoints:
            listed = [os.path.join(self.directory, name) for name in self.record.files()]
            for path in listed:
                if not os.path.exists(path):
                    self.log.warning("%s is listed in %s but gone", path, RECORD_NAME)
            return [path for path in reversed(listed) if os.path.exists(path)]
        return list(reversed(checkpoints_by_name(self.directory)))

    def recorded_epoch_shape(self, path):
        """The epoch shape `path` was trained with: from the record, else (a folder of an earlier
        version) its steps per epoch from the name; {} when unknown."""
        entry = self.record.entry(os.path.basename(path)) or {}
        shape = {k: v for k, v in entry.items() if k not in ("file", "global_step")}
        if "steps_per_epoch" not in shape and steps_per_epoch_from_name(path):
            shape["steps_per_epoch"] = steps_per_epoch_from_name(path)
        return shape

    def holds_step(self, global_step):
        """Whether the newest checkpoint recorded is of `global_step`."""
        return bool(self.record.checkpoints) and self.record.checkpoints[-1]["global_step"] == global_step

    def checkpoint_bytes(self):
        """About the size of one checkpoint: the state's values (the file adds names, ~1%)."""
        state = self._state()
        params = [item["data"] for item in state] if isinstance(state, list) else state.get_parameters()
        return sum(p.size * p.itemsize for p in params)

    def best_score(self):
        return None if not self.record.best else float(self.record.best["score"])

    # ---- writing ----------------------------------------------------------------------------
    def save_epoch(self, epoch, step_in_epoch, global_step, last_good=None):
        """Write the checkpoint of step `step_in_epoch` of `epoch` (the epoch's last, or where a
        signal stopped the run), record it, then delete this lineage's checkpoints beyond
        keep_checkpoint_max (oldest first; the one just written is never among them)."""
        name = epoch_checkpoint_name(epoch, step_in_epoch)
        path = self._write(name, global_step, last_good)
        self.record.add(name, global_step, self.epoch_shape)
        expired = self.record.drop_oldest(self.keep_max)
        self._save_record(last_good)
        for old in expired:
            old_path = os.path.join(self.directory, old)
            if os.path.exists(old_path):
                os.remove(old_path)
        return path

    def save_best(self, score, epoch, global_step, last_good=None):
        path = self._write(BEST_NAME, global_step, last_good)
        self.record.best = {
            "file": BEST_NAME,
            "score": float(score),
            "epoch": int(epoch),
            "global_step": int(global_step),
        }
        self._save_record(last_good)
        return path

    def _save_record(self, last_good):
        try:
            self.record.save()
        except OSError as exc:
            raise self._write_failure(exc, self.record.path, last_checkpoint_text(last_good)) from None

    def _write_failure(self, exc, path, last):
        """A full / read-only disk is the user's to fix (StorageError); another I/O error is the
        run's failure (TrainingError). Both say what was kept."""
        advice = (
            f"no part of it was kept, and {last}. Free space on {self.directory} (a checkpoint "
            f"takes about {megabytes(self.checkpoint_bytes())}) or make it writable, then "
            "continue with --resume=True"
        )
        return storage_error(exc, path, advice) or TrainingError(
            f"could not write {path} ({exc.strerror or exc}); no part of it was kept, and {last}"
        )

    def _state(self):
        """The train step's own list when it has one (it leaves out accumulation buffers), and the
        weights' average when there is one."""
        listed = getattr(self.train_cell, "checkpoint_parameters", None)
        state = listed() if listed is not None else self.train_cell
        if self.average is None:
            return state
        if not isinstance(state, list):
            state = [{"name": p.name, "data": p} for p in state.get_parameters()]
        return state + self.average.checkpoint_parameters()

    def _write(self, name, global_step, last_good):
        """Write the state under `name` if every value is finite; else write nothing and stop."""
        last = last_checkpoint_text(last_good)
        bad = non_finite_parameters(self.train_cell)
        if self.average is not None:
            bad += non_finite_parameters([item["data"] for item in self.average.checkpoint_parameters()])
        if bad:
            name0, count, size = bad[0]
            more = (
                f" (and {len(bad) - 1} more parameters: {', '.join(b[0] for b in bad[1:4])}"
                f"{' ...' if len(bad) > 4 else ''})"
                if len(bad) > 1
                else ""
            )
            raise TrainingError(
                f"step {global_step}: {name0} has {count} non-finite values of {size}{more}; {name} "
                f"was not written and {last}. The run diverged: lower --lr, set --grad_clip_norm "
                "(e.g. 10), or use --loss_scale_type=dynamic."
            )
        path = os.path.join(self.directory, name)
        try:
            entries = {**checkpoint_entries(self.description), STEPS_TAKEN: int(global_step)}
            return save_checkpoint_atomic(self._state(), path, append_dict=entries)
        except OSError as exc:
            raise self._write_failure(exc, path, last) from None
