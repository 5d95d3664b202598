"""The trainer of one process: networks, train step, starting point (resume / pre-trained) and the
step loop; what happens around the steps lives in hooks.py."""

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
import mindspore.nn as nn
import numpy as np

from nasfpn.model_files.checkpoint import (
    CheckpointError,
    DamagedCheckpointError,
    check_checkpoint_values,
    holds_ema,
    is_ema_state,
    load_checkpoint_into,
    network_params_from,
    read_checkpoint,
)
from nasfpn.core.errors import UserError
from nasfpn.model_files.description import METADATA_KEY
from nasfpn.model import RetinaNetWithLoss, build_detector
from nasfpn.model.backbone_weights import (
    BackboneFileError,
    backbone_file_hint,
    freeze_backbone_stages,
    load_backbone_into,
    read_backbone_weights,
)
from nasfpn.model.recompute import apply_recompute
from nasfpn.core.storage import check_output_dir
from nasfpn.training.checkpoint_store import LOG_NAME, STEPS_TAKEN, CheckpointStore
from nasfpn.training.class_keeping import load_keeping_classes
from nasfpn.training.ema import EmaUpdate, WeightAverage
from nasfpn.training.hooks import (
    CheckpointSaver,
    ConsoleLog,
    CsvLog,
    NonFiniteGuard,
    PeriodicEval,
    RunState,
    last_checkpoint_text,
)
from nasfpn.training.lr_schedule import (
    fit_schedule_to_run,
    lr_headline,
    lr_schedule_from_config,
    warn_about_schedule,
)
from nasfpn.training.preemption import StopRequest, StopVote
from nasfpn.training.train_step import TrainStep, build_optimizer, positives_group_size

CLASS_HEAD = "network.head.multi_cls_layers"  # dropped by filter_weight with keep_class_rows=False


def mixed_precision(net, amp_level):
    """`net` under amp O2 / O3: the returned cell shares its parameters and casts the loss back to
    float32. Under O2 synchronised BN stays float32 like plain BN (MindSpore's black list names
    BatchNorm1d/2d/3d and LayerNorm, not SyncBatchNorm)."""
    if amp_level == "O2":
        return ms.amp.custom_mixed_precision(net, black_list=ms.amp.get_black_list() + [nn.SyncBatchNorm])
    return ms.amp.auto_mixed_precision(net, amp_level)


def checkpoint_dir(save_checkpoint_path, rank):
    """The checkpoint folder of one rank under --save_checkpoint_path."""
    return os.path.join(save_checkpoint_path, f"ckpt_{rank}")


class EpochShapeError(UserError):
    """--resume=True with a batch size / device count / accumulate_steps that changes the steps."""


def describe_epoch_shape(shape):
    text = f"{shape['steps_per_epoch']} steps per epoch"
    if "global_batch" in shape:
        text += (
            f" of {shape['global_batch']} images (batch_size {shape['batch_size']} x "
            f"{shape['device_num']} device(s) x accumulate_steps {shape['accumulate_steps']})"
        )
    return text


class Trainer:
    """Owns the networks and the train step for one process (one rank)."""

    def __init__(self, cfg, batches_per_epoch, rank=0, group_size=1, log=None, description=None):
        """`batches_per_epoch`: the dataset's batches per epoch on this rank. With accumulate_steps K
        the optimizer steps every K batches, and everything counts optimizer steps: the lr schedule,
        steps_per_epoch, global_step in checkpoints and train_log.csv; the batches left over at the
        end of an epoch (batches_per_epoch % K) are not trained on. `description` (network options
        and class list) goes into every checkpoint written."""
        self.cfg = cfg
        self.rank = rank
        self.accumulate_steps = (
            cfg.accumulate_steps
        )  # a count: checked with the other ranges in nasfpn/config/flat.py
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
        self.detector = build_detector(cfg.model, cfg.anchors, sync_bn=cfg.sync_bn and group_size > 1)
        apply_recompute(self.detector, cfg.recompute)
        self.frozen = self._freeze_backbone(cfg.backbone_frozen_stages)  # before the optimizer is built
        self.net = RetinaNetWithLoss(
            self.detector,
            cfg.num_classes,
            cfg.gamma,
            cfg.alpha,
            positives_group_size(cfg.normalize_positives_over_devices, group_size),
        )
        # --ema: the moving average of the detector's weights (nasfpn/training/ema.py); built before
        # amp, whose O2 wraps BN cells and so renames their paths (not their parameters)
        self.average = WeightAverage(self.detector, cfg.ema_decay, cfg.ema_warmup_steps) if cfg.ema else None
        if cfg.amp_level != "O0":
            if cfg.device_target == "CPU":
                self.log.warning("amp_level=%s ignored on CPU (float32 training)", cfg.amp_level)
            else:
                self.net = mixed_precision(self.net, cfg.amp_level)
        self.optimizer = build_optimizer(self.net, self.lr, cfg.momentum, cfg.weight_decay)
        self.step = TrainStep(
            self.net,
            self.optimizer,
            cfg.loss_scale,
            cfg.loss_scale_type == "dynamic",
            cfg.grad_clip_norm,
            self.accumulate_steps,
        )
        self.average_resumed = False
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
        self.class_names = list(description.class_names) if description and description.class_names else None
        self.stop_vote = StopVote(group_size)
        self.start_step = 0  # steps taken before this run: the position in the data and epochs
        self.start_updates = 0  # of them, those applied (the optimizer's global_step): see _loop
        self.resumed_from = None

    # ---- starting point ---------------------------------------------------------------------
    def restore(self, backbone=None):
        """Resume (newest valid checkpoint of this lineage), or pre_trained weights, or the
        backbone_pretrained ImageNet backbone (`backbone`: that file already read, else it is read
        here); sets and returns self.start_step. A new run refuses a checkpoint folder that already
        holds checkpoints."""
        cfg = self.cfg
        candidates = self.store.open(cfg.resume)
        if cfg.resume and candidates:
            self.resumed_from = self._resume_from_newest_valid(candidates)
        elif cfg.resume:
            self.log.warning(
                "--resume=True but %s holds no checkpoint to resume from; training starts from scratch",
                self.ckpt_dir,
            )
        if self.resumed_from is None and cfg.pre_trained:
            self._load_pre_trained()
            self.start_step = cfg.pre_trained_epoch_size * self.steps_per_epoch
            self.log.info(
                "loaded %s; schedule starts at epoch %d", cfg.pre_trained, cfg.pre_trained_epoch_size
            )
        if cfg.backbone_pretrained:  # config validation refuses it together with pre_trained
            self._load_backbone(backbone)
        elif self.frozen and self.resumed_from is None and not cfg.pre_trained:
            self.log.warning(
                "backbone_frozen_stages=%d without backbone_pretrained or pre_trained: the "
                "frozen layers keep their random initialisation",
                cfg.backbone_frozen_stages,
            )
        if self.resumed_from is None and cfg.global_step:  # release: the lr array starts here
            self.start_step = cfg.global_step
            self.log.info("schedule starts at step %d (--global_step)", cfg.global_step)
        if self.resumed_from is None:  # a resumed optimizer has its own count of applied updates
            self.start_updates = self.start_step
            if self.start_step:
                self.optimizer.global_step.set_data(ms.Tensor([self.start_step], ms.int32))
        if self.average is not None and not self.average_resumed:
            self.average.start_from_weights()  # the starting point's weights, whichever it was
        return self.start_step

    def _load_pre_trained(self):
        """pre_trained's weights into the network: all of them; with filter_weight the class head
        keeps the rows of the classes this run shares by name (keep_class_rows) or is dropped."""
        cfg = self.cfg
        try:
            if (
                cfg.filter_weight
                and cfg.keep_class_rows
                and load_keeping_classes(
                    self.net,
                    cfg.pre_trained,
                    self.class_names,
                    cfg.anchors.per_cell,
                    self.log,
                    use_ema=cfg.use_ema,
                )
            ):
                return
            load_checkpoint_into(
                self.net,
                cfg.pre_trained,
                skip=(CLASS_HEAD,) if cfg.filter_weight else (),
                use_ema=cfg.use_ema,
            )
        except DamagedCheckpointError:
            raise  # names the file and what is wrong with it; no hint applies
        except CheckpointError as exc:
            backbone_only = backbone_file_hint(cfg.pre_trained, self.detector.backbone, cfg.backbone_depth)
            if backbone_only:
                raise BackboneFileError(backbone_only) from None
            hint = "" if cfg.filter_weight else class_head_hint(exc, cfg.num_classes, cfg.anchors.per_cell)
            if not hint:
                raise
            raise CheckpointError(f"{exc} {hint}", exc.wrong_shapes) from None

    def _freeze_backbone(self, stages):
        frozen = freeze_backbone_stages(self.detector.backbone, stages)
        if frozen:
            self.log.info(
                "backbone: stem and layer1..layer%d frozen (%d parameters without gradient, their "
                "BN on its moving statistics)",
                stages,
                len(frozen),
            )
        return frozen

    def _load_backbone(self, weights):
        """The ImageNet backbone at a new run's start; a resumed run continues from its checkpoint,
        which holds the backbone as trained so far (the same command line restarts a stopped run)."""
        path = self.cfg.backbone_pretrained
        if self.resumed_from is not None:
            self.log.info(
                "backbone_pretrained=%s not loaded: resumed from %s, which holds the trained backbone",
                path,
                self.resumed_from,
            )
            return
        weights = weights or read_backbone_weights(path, self.cfg.backbone_depth)
        load_backbone_into(self.detector.backbone, weights)
        self.log.info("%s", weights.summary())

    def _resume_from_newest_valid(self, candidates):
        """Load the first of `candidates` (newest first) that is an intact, complete training state;
        a damaged (CRC, impossible values), unreadable or incomplete one is skipped, and one warning
        names the skipped files and the one resumed from. None resumable: one-line error."""
        refused = []
        for path in candidates:
            try:
                self.start_step, self.start_updates = self._load_training_state(path)
            except CheckpointError as exc:
                refused.append(str(exc))
                continue
            self._check_epoch_shape(path)
            if refused:
                self.log.warning("resuming from %s, an older checkpoint: %s", path, "; ".join(refused))
            self.log.info(
                "resumed from %s at step %d (epoch %d)",
                path,
                self.start_step,
                self.start_step // self.steps_per_epoch,
            )
            return path
        raise CheckpointError(
            f"--resume=True: no checkpoint in {self.ckpt_dir} can be resumed from: " + " | ".join(refused)
        )

    def _check_epoch_shape(self, path):
        """A step means a position in the data and in the lr schedule only for one epoch shape:
        resuming with other steps would continue at another sample with no word, so refuse, with
        both shapes and the two ways on. The same shape from another split of the batch (e.g. 2
        devices x 4 instead of 1 x 8) visits the same samples: continue, and say so."""
        then = self.store.recorded_epoch_shape(path)
        now = self.epoch_shape
        if not then:
            return
        if (
            then["steps_per_epoch"] != now["steps_per_epoch"]
            or then.get("global_batch", now["global_batch"]) != now["global_batch"]
        ):
            done_epochs = self.start_step // then["steps_per_epoch"]
            raise EpochShapeError(
                f"--resume=True: {path} was trained with {describe_epoch_shape(then)}, this run has "
                f"{describe_epoch_shape(now)}; its step {self.start_step} would be another sample "
                "and another point of the lr schedule here. Resume with the batch_size, device count "
                f"and accumulate_steps it was trained with, or start a new run from its weights: "
                f"--pre_trained={path} --pre_trained_epoch_size={done_epochs} and another "
                "--save_checkpoint_path"
            )
        split = ("batch_size", "device_num", "accumulate_steps")
        if all(k in then for k in split) and any(then[k] != now[k] for k in split):
            self.log.info(
                "resuming with the same %d images per step and %d steps per epoch, split "
                "as batch_size %d x %d device(s) x accumulate_steps %d (was %d x %d x %d)",
                now["global_batch"],
                now["steps_per_epoch"],
                *(now[k] for k in split),
                *(then[k] for k in split),
            )

    def _load_training_state(self, path):
        """Network, BN statistics, optimizer moments and step of `path` into the train step; returns
        (steps taken, updates applied). Nothing is assigned unless the whole state is there, fits and
        holds possible values (finite, BatchNorm variances >= 0)."""
        params = read_checkpoint(path)
        network_params_from(params, self.net, path)
        # the whole state continues, so all of it must be possible: weights, moments, averages
        check_checkpoint_values({k: v for k, v in params.items() if isinstance(v, ms.Parameter)}, path)
        average_state = self.average.state_in(params, path) if self.average is not None else {}
        missing = [p.name for p in self.optimizer.moments if p.name not in params]
        if "global_step" not in params:
            missing.append("global_step")
        if missing and all(name.startswith("moments.network.backbone.") for name in missing):
            raise CheckpointError(
                f"{path} has no optimizer state for {len(missing)} backbone parameters "
                f"(e.g. {missing[0]}): it was trained with more frozen stages; resume "
                "with its --backbone_frozen_stages, or use --pre_trained to start "
                "from its weights"
            )
        if missing:
            raise CheckpointError(
                f"{path} has no complete optimizer state ({len(missing)} missing, e.g. "
                f"{missing[0]}); it cannot be resumed from - use --pre_trained to "
                "start from its weights"
            )
        # The lr array comes from the config (epoch_size may have grown); the step indexes it.
        params.pop("learning_rate", None)
        params.pop(METADATA_KEY, None)  # a str, not a parameter
        had_average = holds_ema(params)
        ms.load_param_into_net(self.step, {k: v for k, v in params.items() if not is_ema_state(k)})
        self._resume_average(path, average_state, had_average)
        return steps_taken_in(params), int(params["global_step"].asnumpy().reshape(-1)[0])

    def _resume_average(self, path, average_state, had_average):
        """Continue the checkpoint's moving average exactly; without one in the file (or without
        --ema) say what happens to it."""
        if self.average is not None and average_state:
            self.average.load_state(average_state)
            self.average_resumed = True
            self.log.info("resumed the EMA of the weights (%d updates)", self.average.update_count())
        elif self.average is not None:
            self.log.warning(
                "%s holds no EMA of the weights: --ema=True starts averaging from its "
                "weights (the decay's warm-up starts again)",
                path,
            )
        elif had_average:
            self.log.warning(
                "%s holds an EMA of the weights; --ema=False: it is not continued and "
                "the next checkpoints hold none",
                path,
            )

    # ---- the loop ---------------------------------------------------------------------------
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
        if self.start_step >= run.total_steps:
            self.log.info("nothing to do: step %d >= %d", self.start_step, run.total_steps)
            return FitResult.of(run, self.ckpt_dir)
        if self.cfg.save_checkpoint:  # about one more checkpoint must fit before it is written
            check_output_dir(self.ckpt_dir, self.store.checkpoint_bytes(), "checkpoint folder")
        os.makedirs(self.ckpt_dir, exist_ok=True)
        hooks = self.default_hooks(evaluate) + list(extra_hooks)
        own_stop = stop is None
        stop = (stop or StopRequest()).install() if own_stop else stop
        try:
            for hook in hooks:
                hook.before_run(run)
            self._loop(dataset, run, hooks, stop)
        finally:
            if own_stop:
                stop.uninstall()
            for hook in hooks:
                hook.after_run(run)
        return FitResult.of(run, self.ckpt_dir)

    def _stop_here(self, run, stop):
        """After a step: whether any rank was asked to stop (every rank asks at every step, so all
        stop after the same one). After the last step there is nothing to stop (every rank knows)."""
        if run.global_step < run.total_steps and self.stop_vote(stop.requested):
            run.stopped_by = stop.signal_name or "a signal to another rank"
            return True
        return False

    def _save_stopped(self, run):
        """Checkpoint the step where a signal stopped the run (unless the epoch's checkpoint of
        that very step was just written) and log one line."""
        tick = time.perf_counter()
        if not self.cfg.save_checkpoint:
            saved = f"nothing saved (--save_checkpoint=False); {last_checkpoint_text(run.last_checkpoint)}"
        elif self.store.holds_step(run.global_step):
            saved = f"its checkpoint is {run.last_checkpoint}"
        else:
            run.last_checkpoint = self.store.save_epoch(
                run.epoch, run.step_in_epoch, run.global_step, last_good=run.last_checkpoint
            )
            saved = f"saved {run.last_checkpoint} in {time.perf_counter() - tick:.1f} s"
        self.log.warning(
            "%s: stopped after step %d (epoch %d, step %d of %d); %s; continue with --resume=True",
            run.stopped_by,
            run.global_step,
            run.epoch,
            run.step_in_epoch,
            run.steps_per_epoch,
            saved,
        )

    def _loop(self, dataset, run, hooks, stop):
        if self._stop_here(run, stop):  # a signal during the set-up: nothing new to save
            self.log.warning(
                "%s before the first step: stopped; nothing was trained by this run", run.stopped_by
            )
            return
        k = self.accumulate_steps
        first_epoch = run.start_step // self.steps_per_epoch
        # A mid-epoch start (resume) skips the batches of the optimizer steps already trained; a run
        # stopped inside an accumulation cycle lost that cycle's partial sum and redoes it whole.
        skip_in_first = (run.start_step % self.steps_per_epoch) * k
        trained_per_epoch = self.steps_per_epoch * k
        iterator = dataset.create_tuple_iterator(num_epochs=run.epoch_size - first_epoch)
        self.step.set_train()
        for epoch in range(first_epoch, run.epoch_size):
            run.epoch = epoch + 1
            tick = time.perf_counter()
            micro_losses = []
            for index, batch in enumerate(iterator):
                if (epoch == first_epoch and index < skip_in_first) or index >= trained_per_epoch:
                    continue
                apply_update = (index + 1) % k == 0
                loss, overflow, _ = self.step(*batch, apply_update) if k > 1 else self.step(*batch)
                micro_losses.append(float(loss.asnumpy()))
                if not apply_update:
                    continue
                run.loss, run.overflow = sum(micro_losses) / k, bool(overflow.asnumpy())
                micro_losses = []
                # the lr the optimizer used (indexed by its own global_step, which a skipped
                # update leaves as it was), and would have used for a skipped one
                run.lr = float(self.lr[run.updates])
                run.seconds = time.perf_counter() - tick
                run.global_step += 1
                run.updates += 0 if run.overflow else 1
                run.step_in_epoch = (index + 1) // k
                for hook in hooks:
                    hook.after_step(run)
                if self._stop_here(run, stop):
                    break
                tick = time.perf_counter()
            if run.stopped_by:
                iterator.stop()  # the rest of this epoch's pipeline is not needed
            if run.stopped_by and run.step_in_epoch < self.steps_per_epoch:
                self._save_stopped(run)
                return
            for hook in hooks:
                hook.after_epoch(run)
            if run.stopped_by:
                self._save_stopped(run)
                return


def steps_taken_in(params):
    """The steps a checkpoint's run had taken, skipped updates included (`step_num`, written since
    the loss-scale overflow rule); a file without it took as many as it applied (`global_step`)."""
    counter = params.get(STEPS_TAKEN, params["global_step"])
    return int(counter.asnumpy().reshape(-1)[0])


def class_head_hint(exc, num_classes, per_cell):
    """The advice for a pre-trained checkpoint whose class head has another number of classes:
    --filter_weight; empty when the class head is not what misfits."""
    for name, file_shape, _ in exc.wrong_shapes:
        if (
            name.startswith(CLASS_HEAD)
            and file_shape
            and file_shape[0] % per_cell == 0
            and file_shape[0] != per_cell * num_classes
        ):
            return (
                f"Its class head predicts {file_shape[0] // per_cell} classes, this network "
                f"{num_classes} (--num_classes): to fine-tune on other classes, add "
                "--filter_weight=True (everything else is loaded; the classes whose names "
                "this run shares keep their rows of the class head, the others start from "
                "the initialisation)."
            )
    return ""


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


@dataclass
class FitResult:
    """What `Trainer.fit` returns, whatever happened."""

    steps: int  # steps trained by this call
    last_loss: Optional[float]  # last finite loss (None when no step ran)
    best: Optional[float]  # best periodic-eval score (None without eval)
    last_checkpoint: Optional[str]  # newest checkpoint of this lineage
    ckpt_dir: str
    stopped_by: Optional[str] = None  # the signal that stopped the run early (None: it finished)

    @classmethod
    def of(cls, run, ckpt_dir):
        return cls(
            run.global_step - run.start_step,
            run.last_loss,
            run.best,
            run.last_checkpoint,
            ckpt_dir,
            run.stopped_by,
        )


def read_train_log(path):
    """(global_step, loss, lr) arrays from a train_log.csv."""
    data = np.genfromtxt(path, delimiter=",", names=True)
    return data["global_step"], data["loss"], data["lr"]
