"""COCO bbox metrics with pycocotools."""
import contextlib
import io
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

    Built from the project's checked loader (src.data.coco_format.load_coco_json), which fills
    `iscrowd` and `area` when a file lacks them: pycocotools would fail on those after all
    inference is done."""
    from pycocotools.coco import COCO
    from ..data.coco_format import load_coco_json
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
    from pycocotools.cocoeval import COCOeval
    ground_truth = ground_truth_coco(annotations)
    if not detections:
        return {k: 0.0 for k in STAT_KEYS}, "no detections: every AP/AR is 0"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        predictions = ground_truth.loadRes([dict(d) for d in detections])  # loadRes edits its input
        evaluator = COCOeval(ground_truth, predictions, "bbox")
        evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = "\n".join(line for line in text.getvalue().splitlines()
                        if line.strip().startswith("Average"))
    return {k: float(v) for k, v in zip(STAT_KEYS, evaluator.stats)}, summary


def format_table(stats):
    lines = [f" {name:<48} = {stats[key]:.4f}" for name, key in zip(STAT_NAMES, STAT_KEYS)]
    return "\n".join(lines)
