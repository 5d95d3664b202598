"""COCO evaluation at COCO scale: 5000 images x 100 detections (synthetic), timed for
pycocotools' COCOeval, for faster-coco-eval when it is importable, and for this project's
analysis (error breakdown + confusion matrix, nasfpn/evaluation/analysis.py). faster-coco-eval is
compared number by number with pycocotools on the synthetic set and on the hand-built case of
tests/test_analysis.py.

    python bench/bench_coco_eval.py [--images=5000] [--repeat=1]
"""

import argparse
import contextlib
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import markdown_table, record  # noqa: E402

NUM_CATEGORIES = 80


def synthetic_coco(num_images, seed=0, boxes_per_image=7, detections_per_image=100):
    """Ground truth (about 7 boxes per 640x480 image over 80 categories) and 100 detections per
    image: a jittered copy of most boxes (some with the wrong class), duplicates, and random
    boxes with low scores, so every error type and the whole score range occur."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": i + 1, "file_name": f"{i + 1}.jpg", "height": 480, "width": 640} for i in range(num_images)
    ]
    categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(NUM_CATEGORIES)]
    annotations, detections = [], []
    for image in images:
        count = rng.integers(1, 2 * boxes_per_image)
        xy = rng.uniform(0, [560, 400], (count, 2))
        wh = rng.uniform(8, 200, (count, 2))
        wh = np.minimum(wh, [640, 480] - xy)
        classes = rng.integers(1, NUM_CATEGORIES + 1, count)
        for box_xy, box_wh, c in zip(xy, wh, classes):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": int(c),
                    "bbox": [*map(float, box_xy), *map(float, box_wh)],
                    "area": float(box_wh[0] * box_wh[1]),
                    "iscrowd": 0,
                }
            )
        found = rng.random(count) < 0.8
        rows = []
        for box_xy, box_wh, c in zip(xy[found], wh[found], classes[found]):
            jitter = rng.normal(0, 0.1, 4) * np.r_[box_wh, box_wh]
            c = int(c) if rng.random() < 0.9 else int(rng.integers(1, NUM_CATEGORIES + 1))
            rows.append((c, np.r_[box_xy + jitter[:2], box_wh + jitter[2:]], rng.uniform(0.3, 1)))
        while len(rows) < detections_per_image:
            box = np.r_[rng.uniform(0, [560, 400]), rng.uniform(8, 200, 2)]
            rows.append((int(rng.integers(1, NUM_CATEGORIES + 1)), box, rng.uniform(0.1, 0.5)))
        for c, box, score in rows[:detections_per_image]:
            box[2:] = np.maximum(box[2:], 1.0)
            detections.append(
                {
                    "image_id": image["id"],
                    "category_id": c,
                    "bbox": [round(float(v), 2) for v in box],
                    "score": round(float(score), 5),
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def pycocotools_stats(coco, detections):
    from pycocotools.cocoeval import COCOeval
    from nasfpn.evaluation.coco_metrics import ground_truth_coco

    ground_truth = ground_truth_coco(coco)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, ground_truth.loadRes([dict(d) for d in detections]), "bbox")
        evaluator.params.imgIds = sorted(i["id"] for i in coco["images"])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.array(evaluator.stats)


def faster_stats(coco, detections):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(coco)
        evaluator = COCOeval_faster(ground_truth, ground_truth.loadRes([dict(d) for d in detections]), "bbox")
        evaluator.params.imgIds = sorted(i["id"] for i in coco["images"])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.array(evaluator.stats[:12])


def analysis_outputs(coco, detections):
    from nasfpn.evaluation.analysis import confusion_matrix, error_breakdown

    ids = [i["id"] for i in coco["images"]]
    error_breakdown(coco, detections, ids)
    confusion_matrix(coco, detections, ids, [c["id"] for c in coco["categories"]])


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def hand_built_case():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.test_analysis import _case

    return _case()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args(argv)
    coco, detections = synthetic_coco(args.images)
    rows = []
    seconds, reference = timed(pycocotools_stats, coco, detections)
    rows.append(("pycocotools COCOeval (evaluate + accumulate + summarize)", f"{seconds:.1f}", "-"))
    try:
        import faster_coco_eval

        version = faster_coco_eval.__version__
    except ImportError:
        version = None
    notes = []
    if version:
        seconds, fast = timed(faster_stats, coco, detections)
        synthetic_diff = float(np.abs(fast - reference).max())
        small, small_dets = hand_built_case()
        small_diff = float(
            np.abs(faster_stats(small, small_dets) - pycocotools_stats(small, small_dets)).max()
        )
        rows.append(
            (
                f"faster-coco-eval {version} COCOeval_faster",
                f"{seconds:.1f}",
                f"{synthetic_diff:.2e} (synthetic), {small_diff:.2e} (hand-built case)",
            )
        )
    else:
        notes.append("faster-coco-eval is not installed: only pycocotools timed.")
    seconds, _ = timed(analysis_outputs, coco, detections)
    rows.append(("error breakdown + confusion matrix (nasfpn/evaluation/analysis.py)", f"{seconds:.1f}", "-"))
    body = (
        f"{args.images} images, {len(coco['annotations'])} boxes, {len(detections)} detections "
        f"(synthetic, {NUM_CATEGORIES} classes); one run each.\n\n"
        + markdown_table(
            ("evaluator", "seconds", "largest difference of the 12 numbers from pycocotools"), rows
        )
        + ("\n\n" + " ".join(notes) if notes else "")
    )
    record("COCO evaluation at COCO scale", body, __file__, argv or sys.argv[1:])


if __name__ == "__main__":
    main()
