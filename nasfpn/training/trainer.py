"""The trainer of one process, three jobs in three modules: building the networks and the train
step (nasfpn/training/networks.py), restoring the starting point - resume, pre-trained weights,
a backbone file, the EMA state (nasfpn/training/starting_point.py) - and the step loop
(nasfpn/training/loop.py). `Trainer` puts them together from a Config and adds the default hooks
(nasfpn/training/hooks.py) around the loop."""

import logging
import os

import numpy as np
from mindspore.nn.utils import no_init_parameters

from nasfpn.core.errors import UserError
from nasfpn.model import build_detector
from nasfpn.training.checkpoint_store import LOG_NAME, CheckpointStore
from nasfpn.training.ema import EmaUpdate
from nasfpn.training.hooks import CheckpointSaver, ConsoleLog, CsvLog, NonFiniteGuard, PeriodicEval, RunState
from nasfpn.training.loop import FitResult, TrainLoop
from nasfpn.training.lr_schedule import (
    fit_schedule_to_run,
    lr_headline,
    lr_schedule_from_config,
    warn_about_schedule,
)
from nasfpn.training.networks import build_training_networks, mixed_precision
from nasfpn.training.preemption import StopVote
from nasfpn.training.starting_point import (
    CLASS_HEAD,
    EpochShapeError,
    StartingPoint,
    StartOptions,
    class_head_hint,
    describe_epoch_shape,
)

# names other modules and tests import from here
__all__ = [
    "CLASS_HEAD",
    "EpochShapeError",
    "FitResult",
    "Trainer",
    "checkpoint_dir",
    "class_head_hint",
    "describe_epoch_shape",
    "mixed_precision",
    "optimizer_steps_per_epoch",
    "read_train_log",
]


def checkpoint_dir(save_checkpoint_path, rank):
    """The checkpoint folder of one rank under --save_checkpoint_path."""
    return os.path.join(save_checkpoint_path, f"ckpt_{rank}")


class Trainer:
    """The networks, train step, starting point and loop of one process (one rank)."""

    def __init__(self, cfg, batches_per_epoch, rank=0, group_size=1, log=None, description=None):
        """`batches_per_epoch`: the dataset's batches per epoch on this rank. With accumulate_steps K
        the optimizer steps every K batches, and everything counts optimizer steps: the lr schedule,
        steps_per_epoch, global_step in checkpoints and train_log.csv; the batches left over at the
        end of an epoch (batches_per_epoch % K) are not trained on. `description` (network options
        and class list) goes into every checkpoint written."""
        self.cfg = cfg
        self.rank = rank
        self.accumulate_steps = cfg.accumulate_steps  # a count: checked in nasfpn/config/flat.py
        self.batches_per_epoch = batches_per_epoch
        self.steps_per_epoch = optimizer_steps_per_epoch(batches_per_epoch, self.accumulate_steps)
        self.global_batch = cfg.batch_size * group_size * self.accumulate_steps  # images per update
        self.log = log or logging.getLogger("nasfpn")
        fitted, fitted_line = fit_schedule_to_run(cfg.schedule, self.steps_per_epoch)
        if fitted is not cfg.schedule:  # before anything reads epoch_size
            cfg = cfg.replace(
                epoch_size=fitted.epoch_size,
                warmup_iters=fitted.warmup_iters,
                lr_decay_epochs=fitted.lr_decay_epochs,
                explicit=False,
            )
        if fitted_line:
            self.log.info("%s", fitted_line)
        self.cfg = cfg
        self.lr = lr_schedule_from_config(cfg.schedule, self.steps_per_epoch, self.global_batch)
        warn_about_schedule(self.log, cfg.schedule, self.steps_per_epoch, self.global_batch)
        self.networks = build_training_networks(
            cfg.model, cfg.anchors, cfg.training, cfg.device.device_target, self.lr, group_size, self.log
        )
        self.eval_detector = None  # built at the first evaluation of the average
        self.ckpt_dir = checkpoint_dir(cfg.save_checkpoint_path, rank)
        self.epoch_shape = {
            "steps_per_epoch": self.steps_per_epoch,
            "global_batch": self.global_batch,
            "batch_size": cfg.batch_size,
            "device_num": group_size,
            "accumulate_steps": self.accumulate_steps,
        }
        self.store = CheckpointStore(
            self.ckpt_dir,
            self.step,
            cfg.keep_checkpoint_max,
            self.log,
            self.epoch_shape,
            description,
            self.average,
        )
        class_names = list(description.class_names) if description and description.class_names else None
        self.start = StartingPoint(
            self.networks,
            self.store,
            self.ckpt_dir,
            self.steps_per_epoch,
            self.epoch_shape,
            class_names,
            self.log,
        )
        self.loop = TrainLoop(
            self.step,
            self.lr,
            self.steps_per_epoch,
            self.accumulate_steps,
            self.store,
            StopVote(group_size),
            cfg.save_checkpoint,
            self.log,
        )

    # the built cells, by the names the rest of the code uses
    detector = property(lambda self: self.networks.detector)
    frozen = property(lambda self: self.networks.frozen)
    net = property(lambda self: self.networks.net)
    average = property(lambda self: self.networks.average)
    optimizer = property(lambda self: self.networks.optimizer)
    step = property(lambda self: self.networks.step)
    # where the run starts (set by restore)
    start_step = property(lambda self: self.start.start_step)
    start_updates = property(lambda self: self.start.start_updates)
    resumed_from = property(lambda self: self.start.resumed_from)

    def restore(self, backbone=None):
        """Load the starting point the config asks for (nasfpn/training/starting_point.py); returns
        the step the schedule starts at. The options are read now, from self.cfg."""
        cfg = self.cfg
        options = StartOptions.from_sections(
            cfg.training, cfg.schedule, cfg.model, cfg.anchors, cfg.inference
        )
        return self.start.restore(options, backbone)

    def default_hooks(self, evaluate=None):
        """Guard, EMA update (--ema), CSV log, console log, checkpoints, periodic eval - in the
        order they run."""
        cfg = self.cfg
        lr_text = ", " + lr_headline(
            cfg.schedule, self.lr, self.steps_per_epoch, self.global_batch, self.start_updates
        )
        hooks = [NonFiniteGuard(cfg.loss_scale_type == "dynamic", self.log)]
        if self.average is not None:  # before anything that saves or evaluates the step
            hooks.append(EmaUpdate(self.average))
        hooks += [
            CsvLog(
                os.path.join(self.ckpt_dir, LOG_NAME), self.start_step if self.resumed_from else 0, self.log
            ),
            ConsoleLog(self.log, cfg.log_interval, lr_text),
        ]
        if cfg.save_checkpoint:
            hooks.append(CheckpointSaver(self.store, cfg.save_checkpoint_epochs, self.log))
        if evaluate is not None and cfg.eval_interval:
            hooks.append(
                PeriodicEval(
                    evaluate,
                    cfg.eval_interval,
                    self.detector,
                    self.step,
                    self.store,
                    self.log,
                    self.detector_to_evaluate if self.average else None,
                )
            )
        return hooks

    def detector_to_evaluate(self):
        """With --ema: a detector of the same options holding the averages (the training
        detector keeps its weights); built once."""
        if self.eval_detector is None:
            with no_init_parameters():  # copy_into sets every parameter
                self.eval_detector = build_detector(self.cfg.model, self.cfg.anchors)
        return self.average.copy_into(self.eval_detector)

    def fit(self, dataset, evaluate=None, extra_hooks=(), stop=None):
        """Train until cfg.epoch_size epochs, calling the default hooks then `extra_hooks`, or until
        `stop` (a StopRequest; by default one installed for the call) records a signal: then the
        current step is finished and checkpointed, and the result says which signal."""
        run = RunState(
            self.steps_per_epoch,
            self.cfg.epoch_size,
            self.start_step,
            self.global_batch,
            global_step=self.start_step,
            updates=self.start_updates,
            last_checkpoint=self.resumed_from,
        )
        return self.loop.fit(dataset, run, lambda: self.default_hooks(evaluate) + list(extra_hooks), stop)


def optimizer_steps_per_epoch(batches_per_epoch, accumulate_steps):
    """Optimizer steps in an epoch of `batches_per_epoch` batches; at least one is needed."""
    steps = batches_per_epoch // accumulate_steps
    if steps == 0:
        raise UserError(
            f"--accumulate_steps={accumulate_steps}: an epoch has only {batches_per_epoch} "
            "batches per device, fewer than one optimizer step needs; lower "
            "--accumulate_steps or --batch_size"
        )
    return steps


def read_train_log(path):
    """(global_step, loss, lr) arrays from a train_log.csv."""
    data = np.genfromtxt(path, delimiter=",", names=True)
    return data["global_step"], data["loss"], data["lr"]
