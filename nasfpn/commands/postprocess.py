"""COCO mAP from the .bin files of the Ascend 310 app (ascend310_infer) or its twin (infer_310_twin.py).

    python postprocess.py --result_path=result_Files --dataset_path=IMAGE_DIR --anno_path=ANNO.json \
        [--img_shape=[640,640]] [--eval_output_dir=./outputs/eval]

Reads <stem>_0.bin / <stem>_1.bin for every image of --dataset_path, runs the post-processing and
COCO evaluation of eval.py, prints the 12-number table and writes predictions.json and metrics.json
to --eval_output_dir (a folder that holds an earlier run's, or is being written by another run,
is refused unless --overwrite=True; docs/troubleshooting.md). The config options (img_shape, anchors, num_classes) must match the model.
Images that infer_310_twin.py skipped (result_Files/skipped_images.txt) are left out and named;
the exit status is then 3 (see nasfpn/core/exits.py).
"""

from typing import Any, Dict, Optional, Sequence

import os

from nasfpn.config.flat import Config, ConfigError, load_config
from nasfpn.core.context import setup_logging
from nasfpn.core.exits import EXIT_OK, EXIT_SKIPPED_INPUTS
from nasfpn.core.errors import UserFileNotFoundError


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return run(load_config(argv))


def run(cfg: Config) -> Dict[str, Any]:
    log = setup_logging(cfg.log_level)
    from nasfpn.deploy.app310_twin import read_skipped_list
    from nasfpn.deploy.result_files import evaluate_result_files
    from nasfpn.evaluation.coco_metrics import format_table
    from nasfpn.evaluation.scoring import EVAL_RESULT_FILES
    from nasfpn.evaluation.report import EVAL_OUTPUT_FILES
    from nasfpn.core.storage import claim_output_dir

    for key in ("result_path", "dataset_path", "anno_path"):
        if not getattr(cfg, key):
            raise ConfigError(f"--{key}: required by postprocess.py")
    if not os.path.isdir(cfg.result_path):
        raise UserFileNotFoundError(f"--result_path: folder not found: {cfg.result_path}")
    stats: Dict[str, Any]
    claim = claim_output_dir(
        cfg.eval_output_dir,
        "eval_output_dir",
        EVAL_RESULT_FILES,
        cfg.overwrite,
        output_patterns=EVAL_OUTPUT_FILES,
    )
    with claim as output_dir:  # a fresh folder that replaces eval_output_dir at the end with --overwrite
        stats, collector = evaluate_result_files(cfg, log=log, output_dir=output_dir)
    print(format_table(stats))
    log.info(
        "%d images, %d detections; predictions.json and metrics.json in %s",
        len(collector.image_ids),
        len(collector.detections),
        os.path.abspath(cfg.eval_output_dir),
    )
    skipped = read_skipped_list(cfg.result_path)
    if skipped:
        log.warning(
            "%d images left out of the evaluation: the inference skipped them (%s)",
            len(skipped),
            "; ".join(f"{name}: {why}" for name, why in skipped.items()),
        )
    stats["skipped_images"] = sorted(skipped)
    print(f"mAP: {stats['AP']}")  # the release's last line (AP@[.5:.95]); scripts read it
    return stats


def exit_status(stats: Any) -> int:
    """3 when images were left out because the inference skipped them, else 0."""
    return EXIT_SKIPPED_INPUTS if stats["skipped_images"] else EXIT_OK
