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

from nasfpn.config.flat import Config, ConfigError, load_config
from nasfpn.core.context import setup_logging


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return run(load_config(argv))


def run(cfg: Config) -> Dict[str, Any]:
    log = setup_logging(cfg.log_level)
    from nasfpn.evaluation.coco_metrics import format_table
    from nasfpn.evaluation.run import evaluate_model

    if cfg.eval_exits:
        return evaluate_exits(cfg, log)
    if cfg.exit_stage and cfg.model_path:
        raise ConfigError(
            f"--exit_stage={cfg.exit_stage} with --model_path={cfg.model_path}: an exported model is the "
            "exit it was exported at (export.py --exit_stage); leave --exit_stage out"
        )
    stats: Dict[str, Any] = evaluate_model(cfg, log)
    print(format_table(stats))
    print(f"mAP: {stats['AP']}")  # the release's last line (AP@[.5:.95]); scripts read it
    return stats


EXIT_METRICS = ("AP", "AP50", "AP75")


def evaluate_exits(cfg: Config, log: Any) -> Dict[str, Any]:
    """--eval_exits: every anytime exit of a deep-supervised checkpoint evaluated in turn (its own
    folder <eval_output_dir>/exit_<k>), then exits.json with each exit's AP, AP50, AP75."""
    import json
    import os

    from nasfpn.core.atomic import atomic_path
    from nasfpn.evaluation.run import evaluate_model
    from nasfpn.model_files.description import config_for_model

    if cfg.model_path or not cfg.checkpoint_path:
        raise ConfigError(
            "--eval_exits=True evaluates the exits of a checkpoint (--checkpoint_path); an exported model "
            "is one exit (export.py --exit_stage=k writes each)"
        )
    described, _ = config_for_model(cfg, cfg.checkpoint_path)
    if not described.deep_supervision:
        raise ConfigError(
            f"--eval_exits=True: {cfg.checkpoint_path} was not trained with deep_supervision, so its early "
            "exits are untrained; evaluate it without --eval_exits"
        )
    rows = []
    for k in range(1, described.fpn_stages + 1):
        out = os.path.join(cfg.eval_output_dir, f"exit_{k}")
        stats = evaluate_model(described.replace(exit_stage=k, eval_output_dir=out, eval_exits=False), log)
        rows.append({"exit_stage": k, **{m: stats[m] for m in EXIT_METRICS}})
        log.info("exit %d of %d: AP %.4f", k, described.fpn_stages, stats["AP"])
    os.makedirs(cfg.eval_output_dir, exist_ok=True)
    summary = {"checkpoint": os.path.abspath(cfg.checkpoint_path), "exits": rows}
    with atomic_path(os.path.join(cfg.eval_output_dir, "exits.json")) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    print("exit  " + "  ".join(f"{m:>6}" for m in EXIT_METRICS))
    for row in rows:
        print(f"{row['exit_stage']:>4}  " + "  ".join(f"{row[m]:6.3f}" for m in EXIT_METRICS))
    return summary
