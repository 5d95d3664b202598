"""Train NAS-FPN (RetinaNet) on a MindRecord dataset, on one device or data-parallel.

    python train.py --mindrecord_dir=DIR [--device_target=Ascend|GPU|CPU] [--epoch_size=300]
        [--batch_size=16] [--pre_trained=CKPT --pre_trained_epoch_size=N] [--distribute=True]
        [--save_checkpoint_path=./ckpt] [--resume=True]

Distributed launches: scripts/run_distribute_train*.sh (rank table on Ascend, msrun on GPU/CPU).
"""
import os

from src.config import load_config, release_key_notes
from src.context import set_context, setup_logging
from src.modelarts import modelarts_entry
from src.cli import run_entry_point
from src.errors import UserError


def main(argv=None):
    return run(load_config(argv))


def run(cfg):
    log = setup_logging(cfg.log_level)
    for note in release_key_notes(cfg):
        log.info(note)
    from src.profiling import profiling_hooks
    from src.data.converters import find_mindrecord
    from src.data.layout import EVAL_PREFIX, TRAIN_PREFIX
    from src.data.pipeline import create_train_dataset
    from src.training.distributed import init_distributed, local_device_id
    from src.training.trainer import Trainer
    from src.evaluation.during_training import make_evaluator
    mindrecord = find_mindrecord(cfg.mindrecord_dir, TRAIN_PREFIX)
    set_context(cfg, device_id=local_device_id(cfg.device_id) if cfg.distribute else None)
    rank, group_size = init_distributed(cfg.distribute)
    import mindspore as ms
    ms.set_seed(cfg.seed)
    dataset = create_train_dataset(mindrecord, cfg, cfg.batch_size, device_num=group_size, rank_id=rank)
    steps_per_epoch = dataset.get_dataset_size()
    if steps_per_epoch == 0:
        raise UserError(f"{mindrecord}: fewer images than --batch_size={cfg.batch_size} x {group_size} "
                         "devices; lower the batch size")
    trainer = Trainer(cfg, steps_per_epoch, rank, group_size, log)
    # epoch e's order and augmentation depend on (seed, e) only: a resumed run continues the stream
    dataset.start_at(trainer.restore() // trainer.steps_per_epoch)
    evaluate = make_evaluator(cfg, EVAL_PREFIX) if cfg.eval_interval and rank == 0 else None
    result = trainer.fit(dataset, evaluate, extra_hooks=profiling_hooks(cfg, log))
    log.info("done: %d steps, last loss %s; checkpoints and train_log.csv in %s", result.steps,
             result.last_loss, os.path.abspath(result.ckpt_dir))
    return result


if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
