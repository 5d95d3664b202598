"""A training run from its config (train.py): input and output checks before any work, device
and ranks, one writer per checkpoint folder, the seeded data stream, resume, and the trainer with
its hooks; SIGTERM / SIGINT stop it after a checkpointed step (nasfpn/training/preemption.py)."""

import os

import mindspore as ms

from nasfpn.config.errors import ConfigError
from nasfpn.config.sections import release_key_notes
from nasfpn.core.context import set_context, tag_logs_with_rank
from nasfpn.data.converters import check_mindrecord, find_mindrecord
from nasfpn.data.layout import EVAL_PREFIX, TRAIN_PREFIX
from nasfpn.data.pipeline import create_train_dataset
from nasfpn.core.errors import UserError
from nasfpn.core.locks import folder_lock
from nasfpn.model.backbone_files import read_backbone_file
from nasfpn.core.storage import StorageError, check_output_dir
from nasfpn.training.distributed import init_distributed, local_device_id
from nasfpn.training.model_record import (
    apply_dataset_classes,
    apply_pretrained_description,
    training_description,
)
from nasfpn.training.preemption import StopRequest
from nasfpn.training.trainer import Trainer, checkpoint_dir

TRAIN_LOCK = ".train.lock"  # in each rank's checkpoint folder, for the whole run


def check_training_exit_stage(exit_stage):
    """Training builds every pyramid stage; exit_stage is for eval, infer and export."""
    if exit_stage:
        raise ConfigError(
            f"--exit_stage={exit_stage}: training runs every pyramid stage (exit_stage is for eval, "
            "infer and export); to train early exits use --deep_supervision=True"
        )


def train_from_config(cfg, log, make_evaluator=None, extra_hooks=()):
    """train.py's run: checks, device and ranks, the data stream, the trainer (resumed when asked)
    and its hooks; returns the trainer's result. `make_evaluator(cfg, prefix)` builds the periodic
    evaluation (nasfpn/evaluation, a layer above this one)."""
    training, device = cfg.training, cfg.device
    training.check_sync_bn(device.device_target)
    check_training_exit_stage(cfg.model.exit_stage)
    for note in release_key_notes(device, training):
        log.info(note)
    cfg, pretrained = apply_pretrained_description(cfg, log)
    mindrecord = find_mindrecord(cfg.data.mindrecord_dir, TRAIN_PREFIX)
    check_mindrecord(mindrecord)
    cfg, dataset_record = apply_dataset_classes(cfg, pretrained, mindrecord, log)
    # read (and checked for its kind and depth) before any work; assigned by the trainer
    backbone = (
        read_backbone_file(
            training.backbone_pretrained,
            cfg.model.backbone,
            cfg.model.backbone_depth,
            cfg.model.backbone_width,
        )
        if training.backbone_pretrained
        else None
    )
    if os.path.isfile(training.save_checkpoint_path):
        raise StorageError(
            f"--save_checkpoint_path={training.save_checkpoint_path} is a file; expected a "
            "folder (training writes ckpt_<rank>/ folders into it): give another path"
        )
    set_context(device, device_id=local_device_id(device.device_id) if training.distribute else None)
    rank, group_size = init_distributed(training.distribute)
    tag_logs_with_rank(rank, group_size)
    ckpt_dir = checkpoint_dir(training.save_checkpoint_path, rank)
    check_output_dir(ckpt_dir, what="checkpoint folder")
    with StopRequest() as stop, folder_lock(ckpt_dir, TRAIN_LOCK, "training run", log):
        ms.set_seed(cfg.data.seed)
        dataset = create_train_dataset(
            mindrecord,
            cfg.data,
            cfg.augmentation,
            cfg.anchors,
            cfg.model.img_shape,
            training.batch_size,
            device_num=group_size,
            rank_id=rank,
        )
        check_batches(dataset, mindrecord, training.batch_size, group_size)
        description = training_description(
            cfg.model,
            cfg.anchors,
            cfg.data,
            cfg.training.filter_weight,
            pretrained,
            log,
            dataset_record,
            "num_classes" in cfg.explicit_keys,
        )
        trainer = Trainer(cfg, dataset.get_dataset_size(), rank, group_size, log, description)
        # epoch e's order and augmentation depend on (seed, e) only: a resumed run continues the stream
        dataset.start_at(trainer.restore(backbone) // trainer.steps_per_epoch)
        evaluate = (
            make_evaluator(cfg, EVAL_PREFIX)
            if make_evaluator and cfg.training.eval_interval and rank == 0
            else None
        )
        result = trainer.fit(dataset, evaluate, extra_hooks=extra_hooks, stop=stop)
    if not result.stopped_by:
        log.info(
            "done: %d steps, last loss %s; checkpoints and train_log.csv in %s",
            result.steps,
            result.last_loss,
            os.path.abspath(result.ckpt_dir),
        )
    return result


def check_batches(dataset, mindrecord, batch_size, group_size):
    """UserError for a training set that gives no batch on this rank."""
    if dataset.get_dataset_size() == 0:
        raise UserError(
            f"{mindrecord}: fewer images than --batch_size={batch_size} x {group_size} "
            "devices; lower the batch size"
        )
