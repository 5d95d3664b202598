"""Per-class results, error breakdown and confusion matrix on a hand-built case whose answers are
known by construction: class 'perfect' found exactly, 'shifted' every box moved so IoU = 1/3,
'dupes' found with a duplicate ranked between its two hits, 'missed' never detected."""

import numpy as np
import pytest

from nasfpn.evaluation.analysis import (
    UnknownCategoryError,
    check_prediction_categories,
    coco_ap,
    confusion_matrix,
    error_breakdown,
    per_class_results,
)
from nasfpn.evaluation.coco_metrics import ground_truth_coco, run_cocoeval

CATEGORIES = [
    {"id": 1, "name": "perfect"},
    {"id": 2, "name": "shifted"},
    {"id": 5, "name": "dupes"},
    {"id": 7, "name": "missed"},
]


def _case():
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 200, "width": 200} for i in (1, 2)]
    boxes = {1: [10, 10, 40, 40], 2: [100, 10, 40, 40], 5: [10, 100, 40, 40], 7: [100, 100, 40, 40]}
    annotations, detections = [], []
    for image in (1, 2):
        for category, box in boxes.items():
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image,
                    "category_id": category,
                    "bbox": box,
                    "area": 1600,
                    "iscrowd": 0,
                }
            )
        detections.append({"image_id": image, "category_id": 1, "bbox": boxes[1], "score": 0.95})
        # moved right by half its width: intersection 20x40, union 60x40 -> IoU 1/3 in [0.1, 0.5)
        x, y, w, h = boxes[2]
        detections.append({"image_id": image, "category_id": 2, "bbox": [x + 20, y, w, h], "score": 0.9})
    detections.append({"image_id": 1, "category_id": 5, "bbox": boxes[5], "score": 0.9})
    detections.append({"image_id": 1, "category_id": 5, "bbox": [11, 101, 40, 40], "score": 0.8})
    detections.append({"image_id": 2, "category_id": 5, "bbox": boxes[5], "score": 0.7})
    coco = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    return coco, detections


# 'dupes' ranks hit, duplicate, hit: precision 1 up to recall 0.5 (51 of COCO's 101 recall points)
# and 2/3 above it (50 points).
DUPES_AP = (51 * 1.0 + 50 * 2 / 3) / 101


def _summarized(coco, detections):
    import contextlib
    import io

    evaluator = run_cocoeval(ground_truth_coco(coco), detections, [1, 2])
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    return evaluator


def test_per_class_results_from_cocoeval_arrays():
    coco, detections = _case()
    evaluator = _summarized(coco, detections)
    rows = per_class_results(evaluator, {c["id"]: c["name"] for c in CATEGORIES})
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows][:2] == ["missed", "shifted"]  # worst first (ties by name)
    assert rows[-1]["name"] == "perfect"
    assert by_name["perfect"]["AP"] == pytest.approx(1.0, abs=1e-12)
    assert by_name["perfect"]["AR100"] == pytest.approx(1.0, abs=1e-12)
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert by_name["shifted"][key] == 0 and by_name["missed"][key] == 0
    # The duplicate cannot hit (its box is taken at every IoU threshold) and both hits are exact,
    # so the ranking hit, miss, hit gives DUPES_AP at every threshold.
    assert by_name["dupes"]["AP50"] == pytest.approx(DUPES_AP, abs=1e-12)
    assert by_name["dupes"]["AP"] == pytest.approx(DUPES_AP, abs=1e-12)
    assert by_name["dupes"]["num_gt"] == 2
    # The mean of the per-class APs is COCOeval's own AP.
    assert np.mean([r["AP"] for r in rows]) == pytest.approx(evaluator.stats[0], abs=1e-12)


def test_coco_ap_matches_hand_count():
    assert coco_ap([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(DUPES_AP, abs=1e-12)
    assert coco_ap([], [], 3) == 0.0


def test_error_breakdown_known_by_construction():
    coco, detections = _case()
    result = error_breakdown(coco, detections, [1, 2], worst=4)
    assert result["counts"] == {
        "classification": 0,
        "localisation": 2,
        "both": 0,
        "duplicate": 1,
        "background": 0,
        "missed": 2,
    }
    # Baseline AP50 = mean(1, 0, DUPES_AP, 0); fixing one type alone lifts one class to 1.
    assert result["AP50"] == pytest.approx((1 + DUPES_AP) / 4, abs=1e-12)
    points = result["overall"]
    assert points["localisation"] == pytest.approx(25.0, abs=1e-9)
    assert points["missed"] == pytest.approx(25.0, abs=1e-9)
    assert points["duplicate"] == pytest.approx(100 * (1 - DUPES_AP) / 4, abs=1e-9)
    assert points["classification"] == points["both"] == points["background"] == 0
    worst = [r["name"] for r in result["per_class"]]
    assert worst == ["missed", "shifted", "dupes", "perfect"]
    assert result["per_class"][1]["points"]["localisation"] == pytest.approx(100.0, abs=1e-9)


def test_error_breakdown_baseline_equals_cocoeval_ap50():
    coco, detections = _case()
    evaluator = _summarized(coco, detections)
    assert error_breakdown(coco, detections, [1, 2])["AP50"] == pytest.approx(evaluator.stats[1], abs=1e-12)


def test_classification_background_and_both_errors():
    coco, _ = _case()
    detections = [
        {"image_id": 1, "category_id": 2, "bbox": [10, 10, 40, 40], "score": 0.9},  # on 'perfect'
        {"image_id": 1, "category_id": 1, "bbox": [160, 160, 30, 30], "score": 0.8},  # nothing there
        {"image_id": 1, "category_id": 7, "bbox": [30, 100, 40, 40], "score": 0.7},  # 1/3 on 'dupes'
    ]
    result = error_breakdown(coco, detections, [1])
    assert result["counts"]["classification"] == 1
    assert result["counts"]["background"] == 1
    assert result["counts"]["both"] == 1
    # the classified-wrong box is pointed at, so it is not also missed: 4 boxes - 1 = 3 missed
    assert result["counts"]["missed"] == 3


def test_confusion_matrix_known_by_construction():
    coco, detections = _case()
    matrix = confusion_matrix(coco, detections, [1, 2], [1, 2, 5, 7], score_threshold=0.3)
    expected = np.zeros((5, 5), np.int64)
    expected[0, 0] = 2  # perfect found twice
    expected[4, 1] = 2  # shifted detections match nothing at 0.5: background row
    expected[1, 4] = 2  # shifted boxes not found: background column
    expected[2, 2] = 2  # dupes found twice
    expected[4, 2] = 1  # the duplicate
    expected[3, 4] = 2  # missed
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_matrix_counts_a_class_swap():
    coco, _ = _case()
    detections = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 40, 40], "score": 0.9}]
    matrix = confusion_matrix(coco, detections, [1], [1, 2, 5, 7])
    assert matrix[0, 1] == 1 and matrix[4].sum() == 0


def test_unknown_prediction_category_is_named():
    with pytest.raises(UnknownCategoryError, match=r"preds.json: detections of category id\(s\) \[9\]"):
        check_prediction_categories([{"category_id": 9}, {"category_id": 1}], CATEGORIES, "preds.json")


def _spread_iou_case(seed=7):
    """Three classes on six images, every detection a ground-truth box shifted right by 0..14 px
    (IoU (40 - dx) / (40 + dx): 1.0 down to 0.48), with scores drawn at random and a few boxes
    of no object: each class's AP differs from one IoU threshold to the next."""
    rng = np.random.default_rng(seed)
    categories = [{"id": 3, "name": "a"}, {"id": 4, "name": "b"}, {"id": 9, "name": "c"}]
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 300, "width": 300} for i in range(1, 7)]
    annotations, detections = [], []
    for image in images:
        for k, category in enumerate(categories):
            for j in range(2):
                box = [20.0 + 120 * j, 20.0 + 90 * k, 40.0, 40.0]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image["id"],
                        "category_id": category["id"],
                        "bbox": box,
                        "area": 1600.0,
                        "iscrowd": 0,
                    }
                )
                dx = float(rng.integers(0, 15))
                detections.append(
                    {
                        "image_id": image["id"],
                        "category_id": category["id"],
                        "bbox": [box[0] + dx, box[1], 40.0, 40.0],
                        "score": float(rng.uniform(0.05, 1.0)),
                    }
                )
            if rng.uniform() < 0.5:  # a box where nothing is
                detections.append(
                    {
                        "image_id": image["id"],
                        "category_id": category["id"],
                        "bbox": [250.0, 250.0, 30.0, 30.0],
                        "score": float(rng.uniform(0.05, 1.0)),
                    }
                )
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def test_per_class_ap_ap50_ap75_equal_pycocotools_on_each_category_alone():
    """Each class's row against pycocotools' own COCOeval run on that category alone: its summary
    is AP, AP50, AP75 ... AR100 (stats 0, 1, 2, 8). The per-class table reads faster-coco-eval's
    accumulated arrays by IoU index, so a column that took another IoU row differs here."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    coco, detections = _spread_iou_case()
    gt = ground_truth_coco(coco)
    rows = {r["category_id"]: r for r in per_class_results(_summarized_on(gt, detections), {})}
    discriminating = 0
    for category in coco["categories"]:
        alone = COCOeval(gt, gt.loadRes(detections), "bbox")
        alone.params.imgIds = [image["id"] for image in coco["images"]]
        alone.params.catIds = [category["id"]]
        with contextlib.redirect_stdout(io.StringIO()):
            alone.evaluate()
            alone.accumulate()
            alone.summarize()
        row = rows[category["id"]]
        # both sides average the same 101-point precisions in float64; summation order may differ
        for key, stat in (("AP", 0), ("AP50", 1), ("AP75", 2), ("AR100", 8)):
            assert row[key] == pytest.approx(alone.stats[stat], abs=1e-12), (category["name"], key)
        assert row["num_gt"] == 12
        discriminating += len({round(row[k], 6) for k in ("AP", "AP50", "AP75")}) == 3
    assert discriminating == len(coco["categories"])  # the case tells the IoU rows apart


def _summarized_on(gt, detections):
    import contextlib
    import io

    evaluator = run_cocoeval(gt, detections, sorted(gt.getImgIds()))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    return evaluator
