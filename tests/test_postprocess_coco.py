"""COCO result entries from detections: field types and the rounding of bbox (2 decimals, x/y/w/h)
and score (5 decimals), checked against values written out by hand."""
import json

import numpy as np

from src.inference.detections import detections_to_coco


def test_entries_round_bbox_to_two_and_score_to_five_decimals():
    boxes = np.array([[10.1234, 20.9876, 30.5678, 44.4321], [0.0, 1.005001, 2.5, 3.0]], np.float64)
    scores = np.array([0.123456789, 0.9], np.float32)
    classes = np.array([1, 3], np.int64)
    entries = detections_to_coco(np.int64(7), boxes, scores, classes, {1: 18, 3: 90})
    assert entries == [
        {"image_id": 7, "category_id": 18, "bbox": [10.12, 20.99, 20.44, 23.44], "score": 0.12346},
        {"image_id": 7, "category_id": 90, "bbox": [0.0, 1.01, 2.5, 1.99], "score": 0.9},
    ]
    first = entries[0]
    assert type(first["image_id"]) is int and type(first["category_id"]) is int
    assert all(type(v) is float for v in first["bbox"]) and type(first["score"]) is float
    json.dumps(entries)  # plain Python types only


def test_no_detections_give_no_entries():
    assert detections_to_coco(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), {}) == []
