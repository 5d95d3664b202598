"""COCO bbox evaluation of a checkpoint or an exported model on an eval MindRecord
(docs/conventions.md#post-processing-and-nms).

    python eval.py (--checkpoint_path=CKPT | --model_path=M.mindir|.onnx | --hub) --mindrecord_dir=DIR
        [--anno_path=JSON | --coco_root=COCO] [--device_target=CPU] [--eval_output_dir=./outputs/eval]

The ground truth is the annotation file the MindRecord's dataset record names (docs/data.md#the-dataset-record);
--anno_path / --coco_root override it (checked against the record) and are needed for a MindRecord
made by an older version.

An exported model (MINDIR, ONNX, INT8 ONNX) goes through the same post-processing and metrics as a
checkpoint; it is fed batches of the size it was exported with (--export_batch_size).

Prints the 12-number COCO table; writes predictions.json and metrics.json to --eval_output_dir,
which must not hold another run's results (--overwrite=True replaces them) nor be in use by a
running evaluation (docs/troubleshooting.md).
"""

from typing import Any, Dict, Optional, Sequence

from nasfpn.config.flat import Config, load_config
from nasfpn.core.context import setup_logging


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return run(load_config(argv))


def run(cfg: Config) -> Dict[str, Any]:
    log = setup_logging(cfg.log_level)
    from nasfpn.evaluation.coco_metrics import format_table
    from nasfpn.evaluation.run import evaluate_model

    stats: Dict[str, Any] = evaluate_model(cfg, log)
    print(format_table(stats))
    print(f"mAP: {stats['AP']}")  # the release's last line (AP@[.5:.95]); scripts read it
    return stats
