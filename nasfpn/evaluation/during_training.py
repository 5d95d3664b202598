"""Evaluation during training: a function(detector) -> COCO AP on the eval MindRecord (the
per-class table is logged each time)."""

import logging

from nasfpn.ops.boxes import Anchors, AnchorSpec
from nasfpn.data.converters import find_mindrecord
from nasfpn.core.errors import UserFileNotFoundError
from nasfpn.data.dataset_record import eval_annotation
from nasfpn.evaluation.analysis import format_per_class_table
from nasfpn.evaluation.scoring import (
    DetectionCollector,
    check_annotations_cover,
    mindrecord_image_ids,
    run_network,
)


def make_evaluator(cfg, eval_prefix):
    """The evaluation function for --eval_interval. The eval MindRecord and its annotation file are
    checked now, not after hours of training: a UserError says what is missing."""
    from nasfpn.data.pipeline import create_eval_dataset
    from nasfpn.inference.runtimes import open_runtime
    from nasfpn.model import RetinaNetInfer

    try:
        mindrecord = find_mindrecord(cfg.mindrecord_dir, eval_prefix)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(
            f"--eval_interval={cfg.eval_interval} needs the eval MindRecord: {exc} "
            "(create it with create_data.py --is_training=False, or set "
            "--eval_interval=0)"
        ) from None
    log = logging.getLogger("nasfpn")
    anno_path, _ = eval_annotation(cfg, mindrecord, log)
    collector = DetectionCollector.from_config(cfg, anno_path)
    check_annotations_cover(collector.coco, anno_path, mindrecord_image_ids(mindrecord), mindrecord)
    anchors = Anchors(AnchorSpec.from_config(cfg)).cycxhw

    def evaluate(detector):
        net = RetinaNetInfer(detector, anchors, cfg.prior_scaling)
        collector = DetectionCollector.from_config(cfg, anno_path)
        run_network(open_runtime(net), create_eval_dataset(mindrecord, cfg), collector, progress=False)
        if collector.size_mismatch_warning():
            log.warning("%s", collector.size_mismatch_warning())
        stats = collector.evaluate()
        log.info("eval per class, worst first:\n%s", format_per_class_table(collector.per_class))
        return stats["AP"]

    return evaluate
