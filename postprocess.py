"""COCO mAP from the .bin files of the Ascend 310 app (ascend310_infer) or its twin (infer_310_twin.py).

    python postprocess.py --result_path=result_Files --dataset_path=IMAGE_DIR --anno_path=ANNO.json \
        [--img_shape=[640,640]] [--eval_output_dir=./outputs/eval]

Reads <stem>_0.bin / <stem>_1.bin for every image of --dataset_path, runs the post-processing and
COCO evaluation of eval.py, prints the 12-number table and writes predictions.json and metrics.json
to --eval_output_dir. The config options (img_shape, anchors, num_classes) must match the model.
"""
import os

from src.config import ConfigError, load_config
from src.context import setup_logging
from src.cli import run_entry_point
from src.errors import UserFileNotFoundError


def main(argv=None):
    cfg = load_config(argv)
    log = setup_logging(cfg.log_level)
    from src.deploy.bin_postprocess import evaluate_result_files
    from src.evaluation.coco_metrics import format_table
    for key in ("result_path", "dataset_path", "anno_path"):
        if not getattr(cfg, key):
            raise ConfigError(f"--{key}: required by postprocess.py")
    if not os.path.isdir(cfg.result_path):
        raise UserFileNotFoundError(f"--result_path: folder not found: {cfg.result_path}")
    stats, collector = evaluate_result_files(cfg)
    print(format_table(stats))
    log.info("%d images, %d detections; predictions.json and metrics.json in %s",
             len(collector.image_ids), len(collector.detections), os.path.abspath(cfg.eval_output_dir))
    return stats


if __name__ == "__main__":
    run_entry_point(main)
