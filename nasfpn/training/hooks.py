"""What happens around each training step, as hooks called by `Trainer.fit` (in list order).

The loop itself only runs steps and keeps a `RunState`; everything else - the non-finite guard,
the CSV log, console logging, checkpoints with rotation, periodic evaluation - is a hook with up to
four methods (the shape of MindSpore's Callback / mmengine's Hook):

    before_run(run)    once, before the first step
    after_step(run)    after every step (run.loss, run.lr, run.seconds are that step's)
    after_epoch(run)   after the last step of each epoch
    after_run(run)     once at the end, also when a hook or a step raised (close files here)
"""

import csv
import math
import os
from dataclasses import dataclass
from typing import Optional

from nasfpn.core.atomic import atomic_path
from nasfpn.core.errors import TrainingError, UserError
from nasfpn.core.storage import storage_error


class TrainLogError(UserError):
    """A train_log.csv this trainer did not write, where it would append to it."""


@dataclass
class RunState:
    """What the loop knows; hooks read it and may set last_loss / last_checkpoint / best."""

    steps_per_epoch: int
    epoch_size: int
    start_step: int
    global_batch: int
    global_step: int = 0  # steps done, including the current one (a skipped update counts)
    updates: int = 0  # of them, the updates applied: the optimizer's global_step, the lr's index
    epoch: int = 0  # 1-based epoch of the current step
    step_in_epoch: int = 0  # 1-based
    loss: float = math.nan
    lr: float = 0.0
    seconds: float = 0.0
    overflow: bool = False
    last_loss: Optional[float] = None  # last finite loss
    last_checkpoint: Optional[str] = None  # newest good checkpoint of this lineage
    best: Optional[float] = None  # best periodic-eval score
    stopped_by: Optional[str] = None  # the signal that stopped the run early

    @property
    def total_steps(self):
        return self.epoch_size * self.steps_per_epoch


class Hook:
    """Does nothing; subclasses override what they need."""

    def before_run(self, run):
        pass

    def after_step(self, run):
        pass

    def after_epoch(self, run):
        pass

    def after_run(self, run):
        pass


def last_checkpoint_text(path):
    """Where a stopped run left its state, for error messages."""
    return f"the last good checkpoint is {path}" if path else "no checkpoint was written by this run"


class NonFiniteGuard(Hook):
    """Stops the run on a non-finite loss or gradients. With a dynamic loss scale a few overflowing
    steps are normal (the update is skipped and the scale lowered): only `patience` in a row stop."""

    def __init__(self, dynamic_loss_scale, log, patience=50):
        self.tolerate = dynamic_loss_scale
        self.patience = patience
        self.log = log
        self.in_a_row = 0

    def after_step(self, run):
        if math.isfinite(run.loss) and not run.overflow:
            self.in_a_row, run.last_loss = 0, run.loss
            return
        self.in_a_row += 1
        if self.tolerate and self.in_a_row < self.patience:
            self.log.warning(
                "step %d: non-finite gradients (loss %s); update skipped, loss scale lowered",
                run.global_step,
                run.loss,
            )
            return
        raise TrainingError(
            f"step {run.global_step}: loss is {run.loss} (non-finite loss or gradients); training "
            f"stopped and wrote no checkpoint of this state; {last_checkpoint_text(run.last_checkpoint)}. "
            "Lower --lr, set --grad_clip_norm (e.g. 10), or use --loss_scale_type=dynamic."
        )


LOG_COLUMNS = ["global_step", "epoch", "loss", "lr", "seconds"]


def cut_train_log(path, last_step):
    """Keep the rows of `path` up to global_step `last_step`: the later ones were trained by an
    interrupted run after its last checkpoint and are trained again now. Rewritten atomically;
    returns the number of rows dropped."""
    if not os.path.exists(path):
        return 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != LOG_COLUMNS:
        raise TrainLogError(
            f"{path}: not a train_log.csv written by this trainer (header {rows[:1]}); "
            "move it away or use another --save_checkpoint_path"
        )
    kept = [
        row
        for row in rows[1:]
        if len(row) == len(LOG_COLUMNS) and row[0].isdigit() and int(row[0]) <= last_step
    ]
    dropped = len(rows) - 1 - len(kept)
    if dropped:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([LOG_COLUMNS] + kept)
    return dropped


class CsvLog(Hook):
    """train_log.csv: one row per step (global_step, epoch, loss, lr, seconds). Rows after
    `keep_until` (the resumed step; 0 for a new run) are dropped first, so no step appears twice."""

    def __init__(self, path, keep_until, log):
        self.path = path
        self.keep_until = keep_until
        self.log = log
        self.file = None
        self.writer = None

    def before_run(self, run):
        try:
            dropped = cut_train_log(self.path, self.keep_until)
            new = not os.path.exists(self.path)
            self.file = open(self.path, "a", newline="")
            self.writer = csv.writer(self.file)
            if new:
                self.writer.writerow(LOG_COLUMNS)
        except OSError as exc:
            raise self._failure(exc, run) from None
        if dropped:
            self.log.warning(
                "%s: dropped %d rows after step %d, left by an earlier run",
                self.path,
                dropped,
                self.keep_until,
            )

    def after_step(self, run):
        try:
            self.writer.writerow(
                [run.global_step, run.epoch, f"{run.loss:.6f}", f"{run.lr:.9g}", f"{run.seconds:.4f}"]
            )
            self.file.flush()  # a killed run keeps every finished step's row
        except OSError as exc:
            raise self._failure(exc, run) from None

    def _failure(self, exc, run):
        advice = (
            f"{last_checkpoint_text(run.last_checkpoint)}. Free space or make the folder "
            "writable, then continue with --resume=True"
        )
        return storage_error(exc, self.path, advice) or TrainingError(
            f"could not write {self.path} ({exc.strerror or exc}); {advice}"
        )

    def after_run(self, run):
        if self.file is not None:
            try:
                self.file.close()
            except OSError:  # a full disk: the flush of each row already failed and was reported
                pass
            self.file = None


class ConsoleLog(Hook):
    """Loss, lr, time per step and images/s every `interval` steps."""

    def __init__(self, log, interval, lr_text=""):
        self.log = log
        self.interval = interval
        self.lr_text = lr_text

    def before_run(self, run):
        first_epoch = run.start_step // run.steps_per_epoch
        self.log.info(
            "training %d steps (%d epochs x %d), global batch %d%s",
            run.total_steps - run.start_step,
            run.epoch_size - first_epoch,
            run.steps_per_epoch,
            run.global_batch,
            self.lr_text,
        )

    def after_step(self, run):
        if run.global_step % self.interval == 0:
            self.log.info(
                "epoch %d/%d step %d/%d (global %d) loss %.4f lr %.6f %.2f s/step %.1f img/s",
                run.epoch,
                run.epoch_size,
                run.step_in_epoch,
                run.steps_per_epoch,
                run.global_step,
                run.loss,
                run.lr,
                run.seconds,
                run.global_batch / max(run.seconds, 1e-9),
            )


class CheckpointSaver(Hook):
    """Every `every` epochs and after the last one: write `retinanet-<epoch>_<steps>.ckpt` through
    `store` (which refuses a non-finite state and rotates the lineage's old files)."""

    def __init__(self, store, every, log):
        self.store = store
        self.every = every
        self.log = log

    def after_epoch(self, run):
        if run.epoch % self.every and run.epoch != run.epoch_size:
            return
        path = self.store.save_epoch(
            run.epoch, run.steps_per_epoch, run.global_step, last_good=run.last_checkpoint
        )
        run.last_checkpoint = path
        self.log.info("saved %s", path)


class PeriodicEval(Hook):
    """Every `interval` epochs: evaluate(detector) -> score; keep `retinanet-best.ckpt` for the best.
    `detector_to_evaluate`, when given, returns the network to evaluate instead of `detector`
    (with --ema: a detector holding the weights' moving average)."""

    def __init__(self, evaluate, interval, detector, train_cell, store, log, detector_to_evaluate=None):
        self.evaluate = evaluate
        self.interval = interval
        self.detector = detector
        self.detector_to_evaluate = detector_to_evaluate
        self.train_cell = train_cell
        self.store = store
        self.log = log

    def before_run(self, run):
        if run.best is None:  # a resumed run competes with the best of the runs before it
            run.best = self.store.best_score()

    def after_epoch(self, run):
        if run.epoch % self.interval:
            return
        score = self.evaluate(self.detector_to_evaluate() if self.detector_to_evaluate else self.detector)
        self.train_cell.set_train()
        improved = run.best is None or score > run.best
        # "best" includes this evaluation, so a new best reads "AP x (best x)"
        self.log.info(
            "epoch %d: eval AP %.4f (best %.4f%s)",
            run.epoch,
            score,
            score if improved else run.best,
            ", new" if improved else "",
        )
        if improved:
            run.best = score
            self.store.save_best(score, run.epoch, run.global_step, last_good=run.last_checkpoint)
