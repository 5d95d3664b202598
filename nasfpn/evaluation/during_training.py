"""Evaluation during training: a function(detector) -> COCO AP on the eval MindRecord (the
per-class table is logged each time)."""

import logging

from nasfpn.ops.boxes import Anchors
from nasfpn.data.converters import find_mindrecord
from nasfpn.core.errors import UserFileNotFoundError
from nasfpn.data.dataset_record import annotation_given, eval_annotation
from nasfpn.evaluation.analysis import format_per_class_table
from nasfpn.evaluation.scoring import (
    DetectionCollector,
    check_annotations_cover,
    mindrecord_image_ids,
    run_network,
)


def make_evaluator(cfg, eval_prefix):
    """The evaluation function for --eval_interval, built from the config's data, model, anchors
    and postprocess sections. The eval MindRecord and its annotation file are checked now, not
    after hours of training: a UserError says what is missing."""
    from nasfpn.data.pipeline import create_eval_dataset
    from nasfpn.inference.runtimes import open_runtime
    from nasfpn.model import RetinaNetInfer

    data, model, anchors, postprocess = cfg.data, cfg.model, cfg.anchors, cfg.postprocess
    try:
        mindrecord = find_mindrecord(data.mindrecord_dir, eval_prefix)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(
            f"--eval_interval={cfg.training.eval_interval} needs the eval MindRecord: {exc} "
            "(create it with create_data.py --is_training=False, or set "
            "--eval_interval=0)"
        ) from None
    log = logging.getLogger("nasfpn")
    anno_path, _ = eval_annotation(data, annotation_given(cfg.explicit_keys), mindrecord, log)
    collector = DetectionCollector.from_sections(model, postprocess, anno_path)
    check_annotations_cover(collector.coco, anno_path, mindrecord_image_ids(mindrecord), mindrecord)
    boxes = Anchors(anchors.spec(model.img_shape)).cycxhw

    def evaluate(detector):
        net = RetinaNetInfer(detector, boxes, anchors.prior_scaling)
        collector = DetectionCollector.from_sections(model, postprocess, anno_path)
        dataset = create_eval_dataset(mindrecord, model.img_shape, data.num_parallel_workers)
        run_network(open_runtime(net), dataset, collector, progress=False)
        if collector.size_mismatch_warning():
            log.warning("%s", collector.size_mismatch_warning())
        stats = collector.evaluate()
        log.info("eval per class, worst first:\n%s", format_per_class_table(collector.per_class))
        return stats["AP"]

    return evaluate
