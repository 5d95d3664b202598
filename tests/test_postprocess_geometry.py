"""Scaling normalised boxes to pixels (float64, x/y order) and the "+1" pixel IoU of boxes that do
not overlap, by hand."""
import numpy as np

from src.boxes import box_iou
from src.inference.detections import _cluster_nms, scale_boxes


def pairwise_iou_plus1(a, b):
    return box_iou(a, b, plus_one=True)


def test_scale_boxes_is_float64_in_xy_order():
    boxes = np.array([[0.1, 0.2, 0.7, 0.9]], np.float32)  # y1, x1, y2, x2
    out = scale_boxes(boxes, 480, 640)
    assert out.dtype == np.float64
    expected = boxes.astype(np.float64)[:, [1, 0, 3, 2]] * np.array([640.0, 480.0, 640.0, 480.0])
    assert out.tobytes() == expected.tobytes()  # float32 arithmetic would round differently
    assert out[0, 1] != np.float32(0.1) * np.float32(480)


def test_boxes_apart_in_one_direction_have_zero_iou():
    a = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 4.0]])
    apart_in_x = np.array([[6.0, 0.0, 6.0, 0.0], [9.0, 0.0, 13.0, 4.0]])
    apart_in_y = np.array([[0.0, 6.0, 0.0, 6.0], [0.0, 9.0, 4.0, 13.0]])
    np.testing.assert_array_equal(pairwise_iou_plus1(a, apart_in_x), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(pairwise_iou_plus1(a, apart_in_y), [[0, 0], [0, 0]])
    # touching pixels overlap under the +1 convention: 5x5 boxes sharing one column
    touching = pairwise_iou_plus1(np.array([[0.0, 0, 4, 4]]), np.array([[4.0, 0, 8, 4]]))
    np.testing.assert_allclose(touching, [[5 / 45]])
    # one-pixel detections side by side in a row or a column both survive NMS
    row = np.array([[0.0, 0, 0, 0], [2.0, 0, 2, 0], [0.0, 2, 0, 2]])
    assert _cluster_nms(row, 0.5).tolist() == [True, True, True]
