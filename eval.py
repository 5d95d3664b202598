"""COCO bbox evaluation of a checkpoint on an eval MindRecord (docs/conventions.md#post-processing-and-nms).

    python eval.py (--checkpoint_path=CKPT | --hub) --mindrecord_dir=DIR --coco_root=COCO [--anno_path=JSON]
        [--device_target=CPU] [--eval_output_dir=./outputs/eval]

Prints the 12-number COCO table; writes predictions.json and metrics.json to --eval_output_dir.
"""
import os

from src.config import ConfigError, load_config
from src.context import set_context, setup_logging
from src.modelarts import modelarts_entry
from src.cli import run_entry_point
from src.errors import UserFileNotFoundError


def main(argv=None):
    cfg = load_config(argv)
    log = setup_logging(cfg.log_level)
    from src.data.converters import find_mindrecord
    from src.data.layout import EVAL_PREFIX, annotation_path
    from src.data.pipeline import create_eval_dataset
    from src.deploy.build import build_inference_network
    from src.deploy.runtimes import open_runtime
    from src.evaluation.coco_metrics import format_table
    from src.evaluation.evaluate import (DetectionCollector, check_annotations_cover,
                                         mindrecord_image_ids, run_network)
    from src.deploy.hub import expected_sha256, published_checkpoint
    if bool(cfg.checkpoint_path) == bool(cfg.hub):
        raise ConfigError("give one of --checkpoint_path (a checkpoint to evaluate) or --hub (the "
                          "published checkpoint)")
    try:
        mindrecord = find_mindrecord(cfg.mindrecord_dir, cfg.prefix or EVAL_PREFIX)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(f"{exc}: python create_data.py --create_dataset={cfg.dataset} "
                                f"--is_training=false --coco_root={cfg.coco_root} "
                                f"--mindrecord_dir={cfg.mindrecord_dir}") from None
    anno_path = annotation_path(cfg, cfg.val_data_type)
    collector = DetectionCollector.from_config(cfg, anno_path)
    check_annotations_cover(collector.coco, anno_path, mindrecord_image_ids(mindrecord), mindrecord)
    set_context(cfg)
    checkpoint = published_checkpoint(cfg) if cfg.hub else cfg.checkpoint_path
    net = build_inference_network(cfg, checkpoint, expected_sha256(cfg, checkpoint))
    dataset = create_eval_dataset(mindrecord, cfg, batch_size=1)
    log.info("evaluating %s on %s (%d images)", checkpoint, mindrecord, dataset.get_dataset_size())
    images_per_second = run_network(open_runtime(net), dataset, collector)
    stats = collector.evaluate(cfg.eval_output_dir)
    print(format_table(stats))
    log.info("%.2f images/s; %d detections; predictions.json and metrics.json in %s",
             images_per_second, len(collector.detections), os.path.abspath(cfg.eval_output_dir))
    print(f"mAP: {stats['AP']}")  # the release's last line (AP@[.5:.95]); scripts read it
    return stats


if __name__ == "__main__":
    run_entry_point(modelarts_entry(main))
