"""Box maths in one place: areas and IoU, anchors, target encoding and matching.

Conventions (docs/conventions.md#boxes): boxes are normalised to [0, 1] of the network input;
anchors are kept both as (cy, cx, h, w) and as corners (y1, x1, y2, x2); ground truth arrives as
corners. Areas and IoU do not depend on the corner order, so `box_area`/`box_iou` serve both
(y1, x1, y2, x2) and (x1, y1, x2, y2) boxes; `plus_one` selects the "+1" pixel convention of NMS.
The box *decoder* is a MindSpore cell (nasfpn/model/detector.py:BoxDecoder) because it runs inside the
exported graph; tests check that it inverts `encode_targets` below.
"""

import math
from dataclasses import dataclass

import numpy as np


def box_area(boxes, plus_one=False):
    """Area of (..., 4) corner boxes, (y1, x1, y2, x2) or (x1, y1, x2, y2).

    plus_one: the pixel-index convention of the release's NMS, side = hi - lo + 1."""
    boxes = np.asarray(boxes)
    return _side(boxes[..., 2], boxes[..., 0], plus_one) * _side(boxes[..., 3], boxes[..., 1], plus_one)


def _side(hi, lo, plus_one):
    return hi - lo + 1 if plus_one else hi - lo


def box_intersection(a, b, plus_one=False):
    """Pairwise intersection area (..., N, M) of corner boxes a (..., N, 4) and b (..., M, 4)."""
    a, b = np.asarray(a), np.asarray(b)
    rows, cols = a[..., :, None, :], b[..., None, :, :]
    side0 = _side(np.minimum(rows[..., 2], cols[..., 2]), np.maximum(rows[..., 0], cols[..., 0]), plus_one)
    side1 = _side(np.minimum(rows[..., 3], cols[..., 3]), np.maximum(rows[..., 1], cols[..., 1]), plus_one)
    zero = np.zeros((), side0.dtype)
    return np.maximum(side0, zero) * np.maximum(side1, zero)


def box_iou(a, b, plus_one=False, area_b=None):
    """Pairwise IoU (..., N, M) of corner boxes a (..., N, 4) and b (..., M, 4) (leading dims broadcast).

    Arithmetic stays in the inputs' dtype (float32 in, float32 out, as the release computes the
    IoUs that decide anchor matches). plus_one: see `box_area`. area_b: box_area(b, plus_one) when
    the caller already holds it (the anchors' areas on the matching hot path)."""
    a, b = np.asarray(a), np.asarray(b)
    inter = box_intersection(a, b, plus_one)
    area_b = box_area(b, plus_one) if area_b is None else area_b
    return inter / (box_area(a, plus_one)[..., :, None] + area_b[..., None, :] - inter)


def xywh_to_corners(boxes):
    """(..., 4) COCO [x, y, w, h] boxes as corners (x1, y1, x2, y2)."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def box_iou_xywh(a, b):
    """IoU matrix (len(a), len(b)) of COCO [x, y, w, h] boxes in float64, COCOeval's convention: no
    +1, areas w * h, 0 where both boxes are empty (no division by a zero union)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    inter = box_intersection(xywh_to_corners(a), xywh_to_corners(b))
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def anchors_per_cell(aspect_ratios, num_scales):
    """Anchors at each feature-map cell: every aspect ratio at every scale."""
    return len(aspect_ratios) * int(num_scales)


@dataclass(frozen=True)
class AnchorSpec:
    """Everything that defines the anchor set; built from the config by `AnchorConfig.spec` (nasfpn/config/sections.py)."""

    img_shape: tuple  # (H, W) of the network input, pixels
    steps: tuple  # stride of each pyramid level, pixels
    anchor_sizes: tuple  # base anchor side of each level, pixels
    aspect_ratios: tuple  # w/h ratios r: w = s*sqrt(r), h = s/sqrt(r) (release order 0.5, 1, 2)
    num_scales: int = 3  # scales 2^(k/num_scales), k = 0..num_scales-1

    @property
    def anchors_per_cell(self):
        return anchors_per_cell(self.aspect_ratios, self.num_scales)

    @property
    def feature_sizes(self):
        """(h, w) of each level's feature map; the input must be divisible by every step."""
        sizes = []
        for step in self.steps:
            if self.img_shape[0] % step or self.img_shape[1] % step:
                raise ValueError(
                    f"img_shape {list(self.img_shape)} is not divisible by step {step}; "
                    f"use a multiple of {max(self.steps)}"
                )
            sizes.append((self.img_shape[0] // step, self.img_shape[1] // step))
        return sizes

    @property
    def num_anchors(self):
        return sum(h * w for h, w in self.feature_sizes) * self.anchors_per_cell


class Anchors:
    """The anchor set (docs/conventions.md#anchors) with the float64->float32 rounding of the release.

    Attributes (all float32):
      cycxhw  (A, 4)  centre/size, rounded once from float64
      corners (A, 4)  (y1, x1, y2, x2) computed in float64 from the float64 centre/size, rounded once
      areas   (A,)    (x2 - x1) * (y2 - y1) in float32
      level_slices    slice of the flat index range that belongs to each level
    """

    def __init__(self, spec: AnchorSpec):
        self.spec = spec
        per_level = [
            self._level_cycxhw(size_hw, step, anchor_size)
            for size_hw, step, anchor_size in zip(spec.feature_sizes, spec.steps, spec.anchor_sizes)
        ]
        cycxhw64 = np.concatenate(per_level, axis=0)
        half = cycxhw64[:, 2:] / 2
        corners64 = np.concatenate([cycxhw64[:, :2] - half, cycxhw64[:, :2] + half], axis=1)
        self.cycxhw = cycxhw64.astype(np.float32)
        self.corners = corners64.astype(np.float32)
        self.areas = box_area(self.corners)
        counts = [len(a) for a in per_level]
        starts = np.cumsum([0] + counts)
        self.level_slices = [slice(int(s), int(e)) for s, e in zip(starts[:-1], starts[1:])]

    def __len__(self):
        return len(self.cycxhw)

    def _level_sizes(self, anchor_size):
        """The per-cell (h, w) list in release order: ratio outer, scale inner (float64)."""
        img_h, img_w = self.spec.img_shape
        sizes = []
        for ratio in self.spec.aspect_ratios:
            for k in range(self.spec.num_scales):
                scale = 2.0 ** (k / self.spec.num_scales)
                sizes.append(
                    (
                        anchor_size / img_h * scale / math.sqrt(ratio),
                        anchor_size / img_w * scale * math.sqrt(ratio),
                    )
                )
        return np.array(sizes, dtype=np.float64)

    def _level_cycxhw(self, size_hw, step, anchor_size):
        rows, cols = size_hw
        img_h, img_w = self.spec.img_shape
        # The release divides by the number of cells per unit (img / step) rather than multiplying
        # by step / img; the two differ in the last float64 bit, which can survive the float32 cast.
        cy = (np.arange(rows, dtype=np.float64) + 0.5) / (img_h / step)
        cx = (np.arange(cols, dtype=np.float64) + 0.5) / (img_w / step)
        hw = self._level_sizes(anchor_size)
        k = len(hw)
        out = np.empty((rows, cols, k, 4), dtype=np.float64)
        out[..., 0] = cy[:, None, None]
        out[..., 1] = cx[None, :, None]
        out[..., 2] = hw[None, None, :, 0]
        out[..., 3] = hw[None, None, :, 1]
        return out.reshape(-1, 4)


class AnchorMatcher:
    """Vectorised, pruned version of the release's sequential matching (docs/conventions.md#matching).

    The release loops over GT boxes computing IoU with all anchors. The result is the same as:
    score[g, a] = IoU, with each GT's best anchor (first on ties) forced to 2.0; every anchor takes
    the GT with the highest score (earliest on ties) if that score > threshold. Two prunings keep
    this exact while touching few anchors:
    - window: only anchors that overlap a box can have a positive IoU, so per level we look at
      just the rectangle of cells the box touches;
    - area: IoU <= min(a, b) / max(a, b) for areas a, b, so anchor shapes whose area is far from
      the box's can neither pass the threshold nor be the box's best anchor once a better IoU is
      known. Shapes are skipped only when that bound (with a margin far above float32 rounding)
      is below the threshold and below the best IoU found.
    The IoU of every anchor still considered is the release's float32 formula, so the result is
    bit-identical to the full computation.
    """

    # Relative slack on the area bound: float32 rounding moves an IoU by ~1e-7 relative.
    _BOUND_SLACK = 1e-4

    def __init__(self, anchors: Anchors, match_threshold=0.5, prior_scaling=(0.1, 0.2)):
        self.anchors = anchors
        self.threshold = np.float32(match_threshold)
        self.prior_scaling = tuple(float(p) for p in prior_scaling)
        spec = anchors.spec
        self._levels = []
        for sl, (rows, cols) in zip(anchors.level_slices, spec.feature_sizes):
            k = spec.anchors_per_cell
            grid = anchors.corners[sl].reshape(rows, cols, k, 4)
            areas = anchors.areas[sl].reshape(rows * cols, k)
            # Per row: the lowest y1 and highest y2 over the cell's anchors; same for columns.
            # Per anchor shape: the smallest and largest float32 area over the cells.
            self._levels.append(
                dict(
                    start=sl.start,
                    cols=cols,
                    k=k,
                    row_lo=grid[:, 0, :, 0].min(axis=1),
                    row_hi=grid[:, 0, :, 2].max(axis=1),
                    col_lo=grid[0, :, :, 1].min(axis=1),
                    col_hi=grid[0, :, :, 3].max(axis=1),
                    area_lo=areas.min(axis=0).astype(np.float64),
                    area_hi=areas.max(axis=0).astype(np.float64),
                )
            )

    def _windows(self, boxes):
        """win[level][g] = (r0, r1, c0, c1): the rectangle of cells box g may touch, or None."""
        out = []
        for lv in self._levels:
            r0 = np.searchsorted(lv["row_hi"], boxes[:, 0], side="right")
            r1 = np.searchsorted(lv["row_lo"], boxes[:, 2], side="left")
            c0 = np.searchsorted(lv["col_hi"], boxes[:, 1], side="right")
            c1 = np.searchsorted(lv["col_lo"], boxes[:, 3], side="left")
            empty = ((r1 <= r0) | (c1 <= c0)).tolist()
            out.append(
                [
                    None if e else w
                    for e, w in zip(empty, zip(r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist()))
                ]
            )
        return out

    def _area_bounds(self, box_areas):
        """(G, levels, shapes) upper bound of the IoU of each anchor shape with each box."""
        lo = np.stack([lv["area_lo"] for lv in self._levels])[None]
        hi = np.stack([lv["area_hi"] for lv in self._levels])[None]
        b = box_areas[:, None, None]
        bound = np.where(b < lo, b / lo, np.where(b > hi, hi / np.maximum(b, 1e-300), 1.0))
        return bound * (1 + self._BOUND_SLACK)

    def _indices(self, windows, g, shape_masks):
        """Flat indices of the anchors of the selected shapes (mask: levels x shapes) in box g's windows."""
        parts = []
        levels_used = shape_masks.any(axis=1).tolist()
        for lv, level_windows, mask, used in zip(self._levels, windows, shape_masks, levels_used):
            window = level_windows[g]
            if window is None or not used:
                continue
            r0, r1, c0, c1 = window
            rows = np.arange(r0, r1)[:, None, None] * (lv["cols"] * lv["k"])
            cols = np.arange(c0, c1)[None, :, None] * lv["k"]
            shapes = np.flatnonzero(mask)[None, None, :]
            parts.append((lv["start"] + rows + cols + shapes).ravel())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _box_ious(self, box, idx):
        return box_iou(box[None], self.anchors.corners[idx], area_b=self.anchors.areas[idx])[0]

    def match(self, gt_boxes):
        """Return the matched GT index per anchor, or -1.

        gt_boxes: (G, 4) float32 normalised corners.
        """
        num = len(self.anchors)
        best = np.zeros(num, dtype=np.float32)
        owner = np.full(num, -1, dtype=np.int64)
        boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
        if not len(boxes):
            return owner
        windows = self._windows(boxes)
        box_areas = box_area(boxes).astype(np.float64)
        bounds = self._area_bounds(box_areas)
        passable = bounds > float(self.threshold)
        for g, box in enumerate(boxes):
            # Pass 1: the shapes that can pass the threshold; pass 2: the others that could still
            # hold the best IoU (all of them when pass 1 found no overlap).
            idx = self._indices(windows, g, passable[g])
            iou = self._box_ious(box, idx)
            top = float(iou.max()) if len(iou) else 0.0
            more = self._indices(windows, g, (bounds[g] >= top) & ~passable[g])
            if len(more):
                idx = np.concatenate([idx, more])
                iou = np.concatenate([iou, self._box_ious(box, more)])
                top = float(iou.max())
            if top > 0:
                forced = int(idx[iou == top].min())  # the release's argmax: first on ties
            else:  # no overlap at all: the release's argmax over all-zero IoUs picks anchor 0
                idx, iou = np.array([0]), np.zeros(1, dtype=np.float32)
                forced = 0
            iou = np.where(idx == forced, np.float32(2.0), iou)
            take = (iou > self.threshold) & (iou > best[idx])
            best[idx[take]] = iou[take]
            owner[idx[take]] = g
        return owner

    def encode(self, gt_boxes, gt_labels):
        """Training targets: (loc (A, 4) float32, label (A,) int32, num_match (1,) int32)."""
        return encode_targets(
            gt_boxes, gt_labels, self.match(gt_boxes), self.anchors.cycxhw, self.prior_scaling
        )


def encode_targets(gt_boxes, gt_labels, owner, anchors_cycxhw, prior_scaling=(0.1, 0.2)):
    """Encode each anchor's matched GT (owner >= 0) as (t_cy, t_cx, t_h, t_w); zeros elsewhere.

    Float32 arithmetic in the release's order, so targets are bit-exact.
    """
    num = len(anchors_cycxhw)
    loc = np.zeros((num, 4), dtype=np.float32)
    labels = np.zeros(num, dtype=np.int32)
    pos = np.nonzero(owner >= 0)[0]
    if len(pos):
        boxes = np.asarray(gt_boxes, dtype=np.float32)[owner[pos]]
        labels[pos] = np.asarray(gt_labels)[owner[pos]]
        anchor = anchors_cycxhw[pos]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = boxes[:, 2:] - boxes[:, :2]
        loc[pos, :2] = (centre - anchor[:, :2]) / (anchor[:, 2:] * np.float32(prior_scaling[0]))
        ratio = np.maximum(size / anchor[:, 2:], np.float32(1e-6))
        loc[pos, 2:] = np.log(ratio) / np.float32(prior_scaling[1])
    num_match = np.array([np.count_nonzero(labels > 0)], dtype=np.int32)
    return loc, labels, num_match
