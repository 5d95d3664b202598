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
