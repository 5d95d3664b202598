"""Where a training run starts: resumed from the newest valid checkpoint of its lineage, or from
pre_trained weights, or from an ImageNet backbone, or from the initialisation - and at which step
of the schedule. The networks are built by nasfpn/training/networks.py; this module only loads
into them."""

import logging
from dataclasses import dataclass
from typing import Optional

import mindspore as ms

from nasfpn.core.errors import UserError
from nasfpn.model.backbone_weights import (
    BackboneFileError,
    backbone_file_hint,
)
from nasfpn.model.backbone_files import load_backbone_file_into, read_backbone_file
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
from nasfpn.model_files.description import METADATA_KEY
from nasfpn.training.checkpoint_store import STEPS_TAKEN
from nasfpn.training.class_keeping import load_keeping_classes
from nasfpn.training.networks import TrainingNetworks

CLASS_HEAD = "network.head.multi_cls_layers"  # dropped by filter_weight with keep_class_rows=False


class EpochShapeError(UserError):
    """--resume=True with a batch size / device count / accumulate_steps that changes the steps."""


@dataclass(frozen=True)
class StartOptions:
    """The options that choose the starting point (docs/training.md)."""

    resume: bool
    pre_trained: str
    pre_trained_epoch_size: int
    global_step: int
    filter_weight: bool
    keep_class_rows: bool
    use_ema: bool
    backbone_pretrained: str
    backbone_depth: int
    backbone_frozen_stages: int
    backbone: str
    backbone_width: float
    num_classes: int
    anchors_per_cell: int

    @classmethod
    def from_sections(cls, training, schedule, model, anchors, inference) -> "StartOptions":
        """The options of the training and schedule sections (where the schedule starts), the
        network's class count and anchors per cell, and inference's use_ema."""
        return cls(
            bool(training.resume),
            training.pre_trained,
            schedule.pre_trained_epoch_size,
            schedule.global_step,
            bool(training.filter_weight),
            bool(training.keep_class_rows),
            bool(inference.use_ema),
            training.backbone_pretrained,
            model.backbone_depth,
            training.backbone_frozen_stages,
            model.backbone,
            model.backbone_width,
            model.num_classes,
            anchors.per_cell,
        )


def describe_epoch_shape(shape):
    text = f"{shape['steps_per_epoch']} steps per epoch"
    if "global_batch" in shape:
        text += (
            f" of {shape['global_batch']} images (batch_size {shape['batch_size']} x "
            f"{shape['device_num']} device(s) x accumulate_steps {shape['accumulate_steps']})"
        )
    return text


class StartingPoint:
    """Loads the starting point into `networks` (one process' cells) and records it: `start_step`,
    `resumed_from` (the checkpoint resumed from, else None), `average_resumed` (the EMA continued)."""

    def __init__(
        self,
        networks: TrainingNetworks,
        store,
        ckpt_dir: str,
        steps_per_epoch: int,
        epoch_shape: dict,
        class_names: Optional[list],
        log: logging.Logger,
    ):
        self.networks = networks
        self.store = store
        self.ckpt_dir = ckpt_dir
        self.steps_per_epoch = steps_per_epoch
        self.epoch_shape = epoch_shape
        self.class_names = class_names
        self.log = log
        self.start_step = 0  # steps taken before this run: the position in the data and epochs
        self.start_updates = 0  # of them, those applied (the optimizer's global_step): see the loop
        self.resumed_from = None
        self.average_resumed = False

    def restore(self, options: StartOptions, backbone=None) -> int:
        """Resume (newest valid checkpoint of this lineage), or pre_trained weights, or the
        backbone_pretrained ImageNet backbone (`backbone`: that file already read, else it is read
        here); sets and returns self.start_step. A new run refuses a checkpoint folder that already
        holds checkpoints."""
        candidates = self.store.open(options.resume)
        if options.resume and candidates:
            self.resumed_from = self._resume_from_newest_valid(candidates)
        elif options.resume:
            self.log.warning(
                "--resume=True but %s holds no checkpoint to resume from; training starts from scratch",
                self.ckpt_dir,
            )
        if self.resumed_from is None and options.pre_trained:
            self._load_pre_trained(options)
            self.start_step = options.pre_trained_epoch_size * self.steps_per_epoch
            self.log.info(
                "loaded %s; schedule starts at epoch %d", options.pre_trained, options.pre_trained_epoch_size
            )
        if options.backbone_pretrained:  # config validation refuses it together with pre_trained
            self._load_backbone(options, backbone)
        elif self.networks.frozen and self.resumed_from is None and not options.pre_trained:
            self.log.warning(
                "backbone_frozen_stages=%d without backbone_pretrained or pre_trained: the "
                "frozen layers keep their random initialisation",
                options.backbone_frozen_stages,
            )
        if self.resumed_from is None and options.global_step:  # release: the lr array starts here
            self.start_step = options.global_step
            self.log.info("schedule starts at step %d (--global_step)", options.global_step)
        if self.resumed_from is None:  # a resumed optimizer has its own count of applied updates
            self.start_updates = self.start_step
            if self.start_step:
                self.networks.optimizer.global_step.set_data(ms.Tensor([self.start_step], ms.int32))
        if self.networks.average is not None and not self.average_resumed:
            self.networks.average.start_from_weights()  # the starting point's weights, whichever it was
        return self.start_step

    def _load_pre_trained(self, options: StartOptions):
        """pre_trained's weights into the network: all of them; with filter_weight the class head
        keeps the rows of the classes this run shares by name (keep_class_rows) or is dropped."""
        net = self.networks.net
        try:
            if (
                options.filter_weight
                and options.keep_class_rows
                and load_keeping_classes(
                    net,
                    options.pre_trained,
                    self.class_names,
                    options.anchors_per_cell,
                    self.log,
                    use_ema=options.use_ema,
                )
            ):
                return
            load_checkpoint_into(
                net,
                options.pre_trained,
                skip=(CLASS_HEAD,) if options.filter_weight else (),
                use_ema=options.use_ema,
            )
        except DamagedCheckpointError:
            raise  # names the file and what is wrong with it; no hint applies
        except CheckpointError as exc:
            backbone_only = backbone_file_hint(
                options.pre_trained, self.networks.detector.backbone, options.backbone_depth
            )
            if backbone_only:
                raise BackboneFileError(backbone_only) from None
            hint = (
                ""
                if options.filter_weight
                else class_head_hint(exc, options.num_classes, options.anchors_per_cell)
            )
            if not hint:
                raise
            raise CheckpointError(f"{exc} {hint}", exc.wrong_shapes) from None

    def _load_backbone(self, options: StartOptions, weights):
        """The ImageNet backbone at a new run's start; a resumed run continues from its checkpoint,
        which holds the backbone as trained so far (the same command line restarts a stopped run)."""
        path = options.backbone_pretrained
        if self.resumed_from is not None:
            self.log.info(
                "backbone_pretrained=%s not loaded: resumed from %s, which holds the trained backbone",
                path,
                self.resumed_from,
            )
            return
        weights = weights or read_backbone_file(
            path, options.backbone, options.backbone_depth, options.backbone_width
        )
        load_backbone_file_into(self.networks.detector.backbone, weights)
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
        networks = self.networks
        params = read_checkpoint(path)
        network_params_from(params, networks.net, path)
        # the whole state continues, so all of it must be possible: weights, moments, averages
        check_checkpoint_values({k: v for k, v in params.items() if isinstance(v, ms.Parameter)}, path)
        average_state = networks.average.state_in(params, path) if networks.average is not None else {}
        missing = [p.name for p in networks.optimizer.moments if p.name not in params]
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
        ms.load_param_into_net(networks.step, {k: v for k, v in params.items() if not is_ema_state(k)})
        self._resume_average(path, average_state, had_average)
        return steps_taken_in(params), int(params["global_step"].asnumpy().reshape(-1)[0])

    def _resume_average(self, path, average_state, had_average):
        """Continue the checkpoint's moving average exactly; without one in the file (or without
        --ema) say what happens to it."""
        average = self.networks.average
        if average is not None and average_state:
            average.load_state(average_state)
            self.average_resumed = True
            self.log.info("resumed the EMA of the weights (%d updates)", average.update_count())
        elif average is not None:
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
