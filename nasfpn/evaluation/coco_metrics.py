"""COCO bbox metrics: ground truth in pycocotools' COCO, evaluation by faster-coco-eval's
COCOeval_faster, which gives pycocotools' COCOeval numbers and arrays (compared in
tests/test_coco_backends.py) several times faster (bench/bench_coco_eval.py)."""

import contextlib
import io
import logging
import os

STAT_NAMES = (
    "AP @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AP @[IoU=0.50      | area=all | maxDets=100]",
    "AP @[IoU=0.75      | area=all | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=large | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=1]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=10]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=large | maxDets=100]",
)
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def ground_truth_coco(annotations):
    """A pycocotools COCO object from an annotation file path or an already loaded dict.

    Built from the project's checked loader (nasfpn.data.coco_format.load_coco_json), which fills
    `iscrowd` and `area` when a file lacks them: pycocotools would fail on those after all
    inference is done."""
    from pycocotools.coco import COCO
    from nasfpn.data.coco_format import load_coco_json

    data = load_coco_json(annotations) if isinstance(annotations, (str, os.PathLike)) else annotations
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = data
        ground_truth.createIndex()
    return ground_truth


def coco_evaluate(annotations, detections, image_ids):
    """COCOeval bbox over `image_ids` against `annotations` (a path or a loaded dict); returns
    (dict STAT_KEYS -> value, pycocotools' summary text).

    With no detections every stat is 0 (pycocotools itself refuses an empty result list)."""
    ground_truth = ground_truth_coco(annotations)
    if not detections:
        return {k: 0.0 for k in STAT_KEYS}, "no detections: every AP/AR is 0"
    evaluator = run_cocoeval(ground_truth, detections, image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    stats = {k: float(v) for k, v in zip(STAT_KEYS, evaluator.stats)}
    return stats, summary_text(stats)


# (AP or AR, IoU, area, maxDets) of each of the twelve numbers, for pycocotools' summary lines
SUMMARY_ROWS = (
    ("AP", "0.50:0.95", "all", 100),
    ("AP", "0.50", "all", 100),
    ("AP", "0.75", "all", 100),
    ("AP", "0.50:0.95", "small", 100),
    ("AP", "0.50:0.95", "medium", 100),
    ("AP", "0.50:0.95", "large", 100),
    ("AR", "0.50:0.95", "all", 1),
    ("AR", "0.50:0.95", "all", 10),
    ("AR", "0.50:0.95", "all", 100),
    ("AR", "0.50:0.95", "small", 100),
    ("AR", "0.50:0.95", "medium", 100),
    ("AR", "0.50:0.95", "large", 100),
)


def summary_text(stats):
    """pycocotools' twelve summary lines, in its format, from the stats (faster-coco-eval logs
    its summary instead of printing it)."""
    lines = []
    for key, (kind, iou, area, max_dets) in zip(STAT_KEYS, SUMMARY_ROWS):
        title = "Average Precision" if kind == "AP" else "Average Recall"
        lines.append(
            f" {title:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | "
            f"maxDets={max_dets:>3d} ] = {stats[key]:0.3f}"
        )
    return "\n".join(lines)


def run_cocoeval(ground_truth, detections, image_ids, evaluator_class=None):
    """An evaluated and accumulated bbox evaluator of `detections` (a non-empty list of COCO result
    entries) over `image_ids` against a pycocotools COCO; its eval arrays hold the per-class
    numbers (nasfpn/evaluation/analysis.py). evaluator_class: COCOeval_faster unless given (the
    tests pass pycocotools' COCOeval to compare)."""
    if evaluator_class is None:
        from faster_coco_eval import COCOeval_faster as evaluator_class

        # it logs its summary at INFO; the entry points print the table themselves
        logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    COCOeval = evaluator_class
    with contextlib.redirect_stdout(io.StringIO()):
        predictions = ground_truth.loadRes([dict(d) for d in detections])  # loadRes edits its input
        evaluator = COCOeval(ground_truth, predictions, "bbox")
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def format_table(stats):
    lines = [f" {name:<48} = {stats[key]:.4f}" for name, key in zip(STAT_NAMES, STAT_KEYS)]
    return "\n".join(lines)
