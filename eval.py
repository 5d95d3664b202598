"""COCO bbox evaluation of a checkpoint or an exported model on an eval MindRecord
(docs/conventions.md#post-processing-and-nms).

    python eval.py (--checkpoint_path=CKPT | --model_path=M.mindir|.onnx | --hub) --mindrecord_dir=DIR
        --coco_root=COCO [--anno_path=JSON] [--device_target=CPU] [--eval_output_dir=./outputs/eval]

An exported model (MINDIR, ONNX, INT8 ONNX) goes through the same post-processing and metrics as a
checkpoint; it is fed batches of the size it was exported with (--export_batch_size).

Prints the 12-number COCO table; writes predictions.json and metrics.json to --eval_output_dir,
which must not hold another run's results (--overwrite=True replaces them) nor be in use by a
running evaluation (docs/troubleshooting.md).
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
    from src.evaluation.evaluate import EVAL_RESULT_FILES
    from src.storage import claim_output_dir
    # Checked and held before anything is read: one writer per folder (docs/troubleshooting.md).
    with claim_output_dir(cfg.eval_output_dir, "eval_output_dir", EVAL_RESULT_FILES, cfg.overwrite):
        return evaluate(cfg, log)


def evaluate(cfg, log):
    from src.data.converters import find_mindrecord
    from src.data.layout import EVAL_PREFIX, annotation_path
    from src.data.pipeline import create_eval_dataset
    from src.deploy.build import build_inference_network
    from src.deploy.runtimes import (check_runtime_classes, check_runtime_input, model_batch_size,
                                     open_runtime)
    from src.evaluation.coco_metrics import format_table
    from src.evaluation.evaluate import (DetectionCollector, check_annotations_cover,
                                         expected_results_bytes, mindrecord_image_ids, run_network)
    from src.deploy.hub import expected_sha256, published_checkpoint
    from src.storage import check_free_space
    chosen = [k for k in ("checkpoint_path", "model_path", "hub") if getattr(cfg, k)]
    if len(chosen) != 1:
        raise ConfigError("give one of --checkpoint_path (a checkpoint to evaluate), --model_path (an "
                          "exported .mindir or .onnx) or --hub (the published checkpoint); got "
                          f"{chosen or 'none'}")
    try:
        mindrecord = find_mindrecord(cfg.mindrecord_dir, cfg.prefix or EVAL_PREFIX)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(f"{exc}: python create_data.py --create_dataset={cfg.dataset} "
                                f"--is_training=false --coco_root={cfg.coco_root} "
                                f"--mindrecord_dir={cfg.mindrecord_dir}") from None
    anno_path = annotation_path(cfg, cfg.val_data_type)
    collector = DetectionCollector.from_config(cfg, anno_path)
    image_ids = mindrecord_image_ids(mindrecord)
    check_annotations_cover(collector.coco, anno_path, image_ids, mindrecord)
    check_free_space(cfg.eval_output_dir, expected_results_bytes(len(image_ids)),
                     f"--eval_output_dir={cfg.eval_output_dir}")
    set_context(cfg)
    if cfg.model_path:
        model = cfg.model_path
        runtime = open_runtime(model, cfg.num_threads)
    else:
        model = published_checkpoint(cfg) if cfg.hub else cfg.checkpoint_path
        runtime = open_runtime(build_inference_network(cfg, model, expected_sha256(cfg, model)))
    batch_size = model_batch_size(runtime)
    check_runtime_input(runtime, cfg.img_shape, batch_size)
    check_runtime_classes(runtime, cfg.num_classes)
    dataset = create_eval_dataset(mindrecord, cfg, batch_size=batch_size)
    log.info("evaluating %s on %s (%d images, batch %d)", model, mindrecord, len(image_ids),
             batch_size)
    images_per_second = run_network(runtime, dataset, collector, model_name=model)
    if collector.size_mismatch_warning():
        log.warning("%s", collector.size_mismatch_warning())
    stats = collector.evaluate(cfg.eval_output_dir)
    print(format_table(stats))
    log.info("%.2f images/s; %d detections; predictions.json and metrics.json in %s",
             images_per_second, len(collector.detections), os.path.abspath(cfg.eval_output_dir))
    print(f"mAP: {stats['AP']}")  # the release's last line (AP@[.5:.95]); scripts read it
    return stats


if __name__ == "__main__":
    run_entry_point(modelarts_entry(main))
