"""Train NAS-FPN (RetinaNet) on a MindRecord dataset, on one device or data-parallel.

    python train.py --mindrecord_dir=DIR [--device_target=Ascend|GPU|CPU] [--epoch_size=300]
        [--batch_size=16] [--pre_trained=CKPT --pre_trained_epoch_size=N] [--distribute=True]
        [--save_checkpoint_path=./ckpt] [--resume=True]

Distributed launches: scripts/run_distribute_train*.sh (rank table on Ascend, msrun on GPU/CPU).
SIGTERM / SIGINT: the current step is finished and checkpointed, then the exit status is 4
(src/cli.py); --resume=True continues from there.
"""
import os

from src.config import load_config, release_key_notes
from src.context import set_context, setup_logging, tag_logs_with_rank
from src.modelarts import modelarts_entry
from src.cli import EXIT_INTERRUPTED, EXIT_OK, run_entry_point
from src.errors import UserError

TRAIN_LOCK = ".train.lock"  # in each rank's checkpoint folder, for the whole run


def main(argv=None):
    return run(load_config(argv))


def run(cfg):
    log = setup_logging(cfg.log_level)
    for note in release_key_notes(cfg):
        log.info(note)
    from src.folder_lock import folder_lock
    from src.profiling import profiling_hooks
    from src.data.converters import check_mindrecord, find_mindrecord
    from src.data.layout import EVAL_PREFIX, TRAIN_PREFIX
    from src.storage import check_output_dir, StorageError
    from src.training.distributed import init_distributed, local_device_id
    from src.training.preemption import StopRequest
    from src.training.trainer import Trainer, checkpoint_dir
    from src.evaluation.during_training import make_evaluator
    mindrecord = find_mindrecord(cfg.mindrecord_dir, TRAIN_PREFIX)
    check_mindrecord(mindrecord)
    if os.path.isfile(cfg.save_checkpoint_path):
        raise StorageError(f"--save_checkpoint_path={cfg.save_checkpoint_path} is a file; expected a "
                           "folder (training writes ckpt_<rank>/ folders into it): give another path")
    set_context(cfg, device_id=local_device_id(cfg.device_id) if cfg.distribute else None)
    rank, group_size = init_distributed(cfg.distribute)
    tag_logs_with_rank(rank, group_size)
    ckpt_dir = checkpoint_dir(cfg, rank)
    check_output_dir(ckpt_dir, what="checkpoint folder")
    with StopRequest() as stop, folder_lock(ckpt_dir, TRAIN_LOCK, "training run", log):
        import mindspore as ms
        ms.set_seed(cfg.seed)
        dataset = create_dataset(cfg, mindrecord, group_size, rank)
        trainer = Trainer(cfg, dataset.get_dataset_size(), rank, group_size, log)
        # epoch e's order and augmentation depend on (seed, e) only: a resumed run continues the stream
        dataset.start_at(trainer.restore() // trainer.steps_per_epoch)
        evaluate = make_evaluator(cfg, EVAL_PREFIX) if cfg.eval_interval and rank == 0 else None
        result = trainer.fit(dataset, evaluate, extra_hooks=profiling_hooks(cfg, log), stop=stop)
    if not result.stopped_by:
        log.info("done: %d steps, last loss %s; checkpoints and train_log.csv in %s", result.steps,
                 result.last_loss, os.path.abspath(result.ckpt_dir))
    return result


def create_dataset(cfg, mindrecord, group_size, rank):
    from src.data.pipeline import create_train_dataset
    dataset = create_train_dataset(mindrecord, cfg, cfg.batch_size, device_num=group_size, rank_id=rank)
    if dataset.get_dataset_size() == 0:
        raise UserError(f"{mindrecord}: fewer images than --batch_size={cfg.batch_size} x {group_size} "
                        "devices; lower the batch size")
    return dataset


def exit_status(result):
    """4 when a signal stopped the run (its last step checkpointed), else 0."""
    return EXIT_INTERRUPTED if result.stopped_by else EXIT_OK


if __name__ == "__main__":
    run_entry_point(modelarts_entry(run), exit_status)
