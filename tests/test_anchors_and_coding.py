"""Anchors and box coding against straightforward references written here (docs/conventions.md#anchors, #box-coding, #matching)."""

import itertools
import math

import mindspore as ms
import numpy as np
import pytest

from nasfpn.ops.boxes import AnchorMatcher, Anchors, encode_targets
from tests.conftest import make_config


def reference_anchors(
    img=640, steps=(8, 16, 32, 64, 128), sizes=(32, 64, 128, 256, 512), ratios=(0.5, 1.0, 2.0)
):
    """The release's generator, literally: python float64 loops, rounded to float32 at the end."""
    boxes, corners = [], []
    scales = [2**0, 2 ** (1 / 3), 2 ** (2 / 3)]
    for step, size in zip(steps, sizes):
        fk = img / step
        base = size / img
        shapes = [(base * s / math.sqrt(r), base * s * math.sqrt(r)) for r in ratios for s in scales]
        for i, j in itertools.product(range(int(fk)), repeat=2):
            for h, w in shapes:
                cy, cx = (i + 0.5) / fk, (j + 0.5) / fk
                boxes.append((cy, cx, h, w))
                corners.append((cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2))
    return np.array(boxes, dtype=np.float32), np.array(corners, dtype=np.float32)


@pytest.fixture(scope="module")
def anchors640():
    cfg = make_config()
    return Anchors(cfg.anchors.spec(cfg.model.img_shape))


def test_anchor_count_and_values_match_reference(anchors640):
    assert len(anchors640) == 76725
    ref_cycxhw, ref_corners = reference_anchors()
    np.testing.assert_array_equal(anchors640.cycxhw, ref_cycxhw)
    np.testing.assert_array_equal(anchors640.corners, ref_corners)
    # First anchor: P3 cell (0, 0), ratio 0.5 scale 1 -> h = 32/640/sqrt(.5), w = 32/640*sqrt(.5).
    np.testing.assert_allclose(
        anchors640.cycxhw[0], [4 / 640, 4 / 640, 0.05 * 2**0.5, 0.05 / 2**0.5], rtol=1e-6
    )


def test_anchors_derive_from_img_shape():
    cfg = make_config("--img_shape=[256,384]")
    spec = cfg.anchors.spec(cfg.model.img_shape)
    assert spec.feature_sizes == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    anchors = Anchors(spec)
    assert len(anchors) == 9 * sum(h * w for h, w in spec.feature_sizes)
    last = anchors.cycxhw[-1]  # P7 bottom-right cell, ratio 2, largest scale
    np.testing.assert_allclose(last[:2], [1.5 / 2, 2.5 / 3], rtol=1e-6)
    np.testing.assert_allclose(
        last[2:], [512 / 256 * 2 ** (2 / 3) / 2**0.5, 512 / 384 * 2 ** (2 / 3) * 2**0.5], rtol=1e-6
    )


def reference_encode(boxes, labels, corners, cycxhw, threshold=0.5):
    """The release's sequential matching + encoding, one GT at a time over all anchors."""
    n = len(corners)
    pre = np.zeros(n, np.float32)
    t_boxes = np.zeros((n, 4), np.float32)
    t_label = np.zeros(n, np.int64)
    vol = (corners[:, 3] - corners[:, 1]) * (corners[:, 2] - corners[:, 0])
    for box, label in zip(boxes, labels):
        ymin = np.maximum(corners[:, 0], box[0])
        xmin = np.maximum(corners[:, 1], box[1])
        ymax = np.minimum(corners[:, 2], box[2])
        xmax = np.minimum(corners[:, 3], box[3])
        inter = np.maximum(ymax - ymin, np.float32(0)) * np.maximum(xmax - xmin, np.float32(0))
        scores = inter / (vol + (box[2] - box[0]) * (box[3] - box[1]) - inter)
        scores[np.argmax(scores)] = 2.0
        mask = (scores > threshold) & (scores > pre)
        pre = np.maximum(pre, scores * mask)
        t_label = np.where(mask, label, t_label)
        t_boxes = np.where(mask[:, None], box[None, :], t_boxes)
    loc = np.zeros((n, 4), np.float32)
    idx = np.nonzero(t_label)[0]
    c = (t_boxes[idx, :2] + t_boxes[idx, 2:]) / 2
    hw = t_boxes[idx, 2:] - t_boxes[idx, :2]
    loc[idx, :2] = (c - cycxhw[idx, :2]) / (cycxhw[idx, 2:] * np.float32(0.1))
    loc[idx, 2:] = np.log(np.maximum(hw / cycxhw[idx, 2:], np.float32(1e-6))) / np.float32(0.2)
    return loc, t_label.astype(np.int32), len(idx)


def random_boxes(rng, count):
    """Boxes of every size class, some touching the border, some duplicated (ties)."""
    sizes = rng.choice([0.02, 0.05, 0.1, 0.3, 0.6, 0.95], size=count)
    h = sizes * rng.uniform(0.5, 1.5, count)
    w = sizes * rng.uniform(0.5, 1.5, count)
    y1 = rng.uniform(-0.05, 1.0, count) * (1 - h)
    x1 = rng.uniform(-0.05, 1.0, count) * (1 - w)
    boxes = np.clip(np.stack([y1, x1, y1 + h, x1 + w], 1), 0, 1).astype(np.float32)
    boxes[-1] = boxes[0]  # an exact duplicate: the earlier GT must keep its anchors
    labels = rng.integers(1, 81, count)
    return boxes, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_and_encoding_are_bit_exact(anchors640, seed):
    rng = np.random.default_rng(seed)
    boxes, labels = random_boxes(rng, 20)
    matcher = AnchorMatcher(anchors640, 0.5, (0.1, 0.2))
    loc, label, num = matcher.encode(boxes, labels)
    ref_loc, ref_label, ref_num = reference_encode(boxes, labels, anchors640.corners, anchors640.cycxhw)
    np.testing.assert_array_equal(label, ref_label)
    np.testing.assert_array_equal(loc, ref_loc)
    assert num.tolist() == [ref_num] and ref_num > 20


def test_every_box_gets_its_best_anchor_even_below_threshold(anchors640):
    # A 3-pixel box: no anchor reaches IoU 0.5, the best one is still forced.
    box = np.array([[0.5, 0.5, 0.505, 0.505]], np.float32)
    loc, label, num = AnchorMatcher(anchors640).encode(box, [7])
    assert num.tolist() == [1] and label.max() == 7
    ref_loc, ref_label, _ = reference_encode(box, [7], anchors640.corners, anchors640.cycxhw)
    np.testing.assert_array_equal(label, ref_label)
    np.testing.assert_array_equal(loc, ref_loc)


def test_no_boxes_gives_all_background(anchors640):
    loc, label, num = AnchorMatcher(anchors640).encode(np.zeros((0, 4), np.float32), [])
    assert num.tolist() == [0] and not label.any() and not loc.any()


def test_encode_then_decoder_cell_round_trip():
    from nasfpn.model import BoxDecoder

    cfg = make_config("--img_shape=[256,256]")
    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    rng = np.random.default_rng(3)
    boxes, labels = random_boxes(rng, 8)
    owner = np.arange(len(anchors)) % len(boxes)  # every anchor encodes some box
    loc, label, _ = encode_targets(boxes, labels, owner, anchors.cycxhw, (0.1, 0.2))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    decoded = BoxDecoder(anchors.cycxhw, (0.1, 0.2))(ms.Tensor(loc[None])).asnumpy()[0]
    np.testing.assert_allclose(decoded, boxes[owner], atol=2e-6)
    assert decoded.min() >= 0 and decoded.max() <= 1
