"""Train NAS-FPN (RetinaNet) on a MindRecord dataset, on one device or data-parallel.

    python train.py --mindrecord_dir=DIR [--device_target=Ascend|GPU|CPU] [--epoch_size=300]
        [--batch_size=16] [--pre_trained=CKPT --pre_trained_epoch_size=N] [--distribute=True]
        [--save_checkpoint_path=./ckpt] [--resume=True]

Distributed launches: scripts/run_distribute_train*.sh (rank table on Ascend, msrun on GPU/CPU).
"""
import os

from src.config import load_config
from src.context import set_context, setup_logging
from src.cli import run_entry_point


def make_evaluator(cfg, log):
    """A function(detector) -> AP on the eval MindRecord, or None when there is none."""
    from src.boxes import Anchors, AnchorSpec
    from src.data.pipeline import create_eval_dataset
    from src.deploy.runtimes import open_runtime
    from src.evaluation.evaluate import DetectionCollector, run_network
    from src.model import RetinaNetInfer
    from src.data.converters import find_mindrecord
    from src.data.layout import EVAL_PREFIX, annotation_path
    try:
        mindrecord = find_mindrecord(cfg.mindrecord_dir, EVAL_PREFIX)
    except FileNotFoundError as exc:
        log.warning("eval_interval set but %s; periodic evaluation disabled", exc)
        return None
    anno_path = annotation_path(cfg, cfg.val_data_type)
    try:  # fail now, not after hours of training
        DetectionCollector.from_config(cfg, anno_path)
    except (OSError, ValueError) as exc:
        log.warning("eval_interval set but %s; periodic evaluation disabled", exc)
        return None
    anchors = Anchors(AnchorSpec.from_config(cfg)).cycxhw

    def evaluate(detector):
        net = RetinaNetInfer(detector, anchors, cfg.prior_scaling)
        collector = DetectionCollector.from_config(cfg, anno_path)
        run_network(open_runtime(net), create_eval_dataset(mindrecord, cfg), collector, progress=False)
        return collector.evaluate()["AP"]
    return evaluate


def main(argv=None):
    cfg = load_config(argv)
    log = setup_logging(cfg.log_level)
    from src.data.converters import find_mindrecord
    from src.data.layout import TRAIN_PREFIX
    from src.data.pipeline import create_train_dataset
    from src.training.distributed import init_distributed, local_device_id
    from src.training.trainer import Trainer
    mindrecord = find_mindrecord(cfg.mindrecord_dir, TRAIN_PREFIX)
    set_context(cfg, device_id=local_device_id(cfg.device_id) if cfg.distribute else None)
    rank, group_size = init_distributed(cfg.distribute)
    import mindspore as ms
    ms.set_seed(cfg.seed)
    dataset = create_train_dataset(mindrecord, cfg, cfg.batch_size, device_num=group_size, rank_id=rank)
    steps_per_epoch = dataset.get_dataset_size()
    if steps_per_epoch == 0:
        raise ValueError(f"{mindrecord}: fewer images than --batch_size={cfg.batch_size} x {group_size} "
                         "devices; lower the batch size")
    trainer = Trainer(cfg, steps_per_epoch, rank, group_size, log)
    trainer.restore()
    evaluate = make_evaluator(cfg, log) if cfg.eval_interval and rank == 0 else None
    result = trainer.fit(dataset, evaluate)
    log.info("done: %d steps, last loss %s; checkpoints and train_log.csv in %s", result["steps"],
             result["last_loss"], os.path.abspath(trainer.ckpt_dir))
    return result


if __name__ == "__main__":
    run_entry_point(main)
