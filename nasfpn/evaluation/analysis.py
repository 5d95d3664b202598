"""What the detector gets wrong: per-class COCO results, an error breakdown, a confusion matrix.

Per-class AP / AP50 / AP75 / AR100 are read from COCOeval's own accumulated arrays (the numbers
its summary averages), so they agree with the twelve-number table by construction.

The error breakdown follows TIDE (Bolya et al. 2020) at IoU 0.5, computed here from the matches:
every detection that is not a true positive gets one error type, tested in this order

- localisation: IoU in [0.1, 0.5) with a same-class box not yet found;
- classification: IoU >= 0.5 with a box of another class;
- duplicate: IoU >= 0.5 with a same-class box another (higher-scoring) detection already found;
- both: IoU in [0.1, 0.5) with a box of another class;
- background: IoU < 0.1 with every box;

and a ground-truth box that no detection finds, and that no localisation or classification error
points at, is missed. The cost of a type is how many AP50 points (x100) fixing only that type
gains: a localisation error becomes a hit on its box (or is dropped when that box is found
already), a classification error moves to its box's class the same way, duplicate / both /
background errors are dropped, and a missed box leaves the count of boxes to find. Crowd boxes
are left out of this analysis (COCOeval ignores detections on them).
"""

from dataclasses import dataclass, field

import numpy as np

from nasfpn.core.errors import UserError
from nasfpn.ops.boxes import box_iou_xywh

FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.1
ERROR_TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recall thresholds
# COCOeval's accumulated arrays: IoU thresholds .50:.05:.95 (index 0 is .5, 5 is .75), area
# ranges (0 = all), maxDets (1, 10, 100: index 2 is 100).
IOU_50, IOU_75, AREA_ALL, MAX_DETS_100 = 0, 5, 0, 2


class UnknownCategoryError(UserError):
    """Predictions name a category the annotation file does not have."""


def check_prediction_categories(detections, categories, source):
    """Raise UnknownCategoryError naming the category ids of `detections` that `categories` (the
    annotation file's category entries) lacks."""
    known = {c["id"] for c in categories}
    unknown = sorted({int(d["category_id"]) for d in detections} - known)
    if unknown:
        raise UnknownCategoryError(
            f"{source}: detections of category id(s) {unknown}, which the "
            f"annotation file lacks (it has ids {sorted(known)}); give the "
            "annotation file the model was trained with (--anno_path)"
        )


def _mean_valid(values):
    """COCOeval's rule: the mean of the entries > -1 (-1 marks 'no ground truth'), else -1."""
    values = np.asarray(values)
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def per_class_results(evaluator, names_by_category):
    """[{category_id, name, AP, AP50, AP75, AR100, num_gt}] from an evaluated and accumulated
    COCOeval, worst AP first (ties by name). A class without ground truth has -1 (COCOeval's mark)
    and sorts last."""
    precision = evaluator.eval["precision"]  # (IoU, recall, class, area, maxDets)
    recall = evaluator.eval["recall"]  # (IoU, class, area, maxDets)
    gt_counts = {}
    for annotation in evaluator.cocoGt.dataset.get("annotations", []):
        if not annotation.get("iscrowd", 0) and annotation["image_id"] in set(evaluator.params.imgIds):
            gt_counts[annotation["category_id"]] = gt_counts.get(annotation["category_id"], 0) + 1
    rows = []
    for k, category_id in enumerate(evaluator.params.catIds):
        rows.append(
            {
                "category_id": int(category_id),
                "name": names_by_category.get(category_id, str(category_id)),
                "AP": _mean_valid(precision[:, :, k, AREA_ALL, MAX_DETS_100]),
                "AP50": _mean_valid(precision[IOU_50, :, k, AREA_ALL, MAX_DETS_100]),
                "AP75": _mean_valid(precision[IOU_75, :, k, AREA_ALL, MAX_DETS_100]),
                "AR100": _mean_valid(recall[:, k, AREA_ALL, MAX_DETS_100]),
                "num_gt": gt_counts.get(category_id, 0),
            }
        )
    return sorted(rows, key=lambda r: (r["AP"] < 0, r["AP"], r["name"]))


def format_per_class_table(rows):
    lines = [f" {'class':<20} {'AP':>7} {'AP50':>7} {'AP75':>7} {'AR100':>7} {'boxes':>6}"]
    for r in rows:
        values = " ".join(
            f"{r[k]:7.4f}" if r[k] >= 0 else f"{'-':>7}" for k in ("AP", "AP50", "AP75", "AR100")
        )
        lines.append(f" {r['name'][:20]:<20} {values} {r['num_gt']:6d}")
    return "\n".join(lines)


def coco_ap(scores, hits, num_gt):
    """COCOeval's 101-point interpolated AP of one class from its detections' scores and hit
    flags (all images together) and the number of boxes to find. No boxes: 1 without false
    positives (nothing to find, nothing wrong), else 0."""
    scores, hits = np.asarray(scores, np.float64), np.asarray(hits, bool)
    if num_gt == 0:
        return 1.0 if hits.all() else 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    if not len(tp):
        return 0.0
    rc = tp / num_gt
    pr = tp / np.maximum(tp + fp, np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision made monotone, as COCOeval does
    index = np.searchsorted(rc, RECALL_POINTS, side="left")
    return float(np.where(index < len(pr), pr[np.minimum(index, len(pr) - 1)], 0.0).mean())


@dataclass
class Detection:
    image_id: int
    category_id: int
    score: float
    bbox: list
    hit: bool = False
    error: str = ""
    target: tuple = ()  # (image_id, gt index) the error points at


@dataclass
class MatchResult:
    detections: list
    gt_category: dict  # (image_id, gt index) -> category id
    found: set = field(default_factory=set)  # (image_id, gt index) hit by a true positive


def _ground_truth_by_image(coco, image_ids):
    wanted = set(int(i) for i in image_ids)
    by_image = {i: [] for i in wanted}
    for annotation in coco["annotations"]:
        if annotation["image_id"] in wanted and not annotation.get("iscrowd", 0):
            by_image[annotation["image_id"]].append(annotation)
    return by_image


def match_detections(coco, detections, image_ids, max_per_class=100):
    """Match every image's detections to its ground truth at IoU 0.5 as COCOeval does (per class,
    best score first, each to the unmatched box of highest IoU), then label each miss with its
    TIDE error type (module docstring)."""
    ground_truth = _ground_truth_by_image(coco, image_ids)
    by_image = {}
    for d in detections:
        if d["image_id"] in ground_truth:
            by_image.setdefault(d["image_id"], []).append(
                Detection(int(d["image_id"]), int(d["category_id"]), float(d["score"]), d["bbox"])
            )
    result = MatchResult([], {})
    for image_id, boxes in ground_truth.items():
        for g, annotation in enumerate(boxes):
            result.gt_category[(image_id, g)] = annotation["category_id"]
        dets = by_image.get(image_id, [])
        dets = sorted(dets, key=lambda d: -d.score)  # stable: file order on equal scores
        kept, per_class = [], {}
        for d in dets:  # COCOeval keeps the best max_per_class of each class per image
            per_class[d.category_id] = per_class.get(d.category_id, 0) + 1
            if per_class[d.category_id] <= max_per_class:
                kept.append(d)
        _match_image(image_id, boxes, kept, result)
        result.detections += kept
    return result


def _match_image(image_id, boxes, dets, result):
    if not dets:
        return
    gt_classes = np.array([b["category_id"] for b in boxes], np.int64)
    iou = box_iou_xywh([d.bbox for d in dets], [b["bbox"] for b in boxes])
    used = np.zeros(len(boxes), bool)
    for i, d in enumerate(dets):  # the true positives, COCOeval's greedy match
        candidates = np.flatnonzero((gt_classes == d.category_id) & ~used)
        if len(candidates):
            best = candidates[np.argmax(iou[i, candidates])]
            if iou[i, best] >= FOREGROUND_IOU:
                used[best] = d.hit = True
                result.found.add((image_id, int(best)))
    for i, d in enumerate(dets):
        if not d.hit:
            d.error, target = _error_type(iou[i], gt_classes == d.category_id, used)
            d.target = () if target is None else (image_id, target)


def _error_type(iou_row, same_class, used):
    """(error type, gt index it points at or None) of a detection that is not a hit."""

    def best(mask):
        index = np.flatnonzero(mask)
        return (
            (None, 0.0)
            if not len(index)
            else (int(index[np.argmax(iou_row[index])]), float(iou_row[index].max()))
        )

    g, value = best(same_class & ~used)
    if g is not None and BACKGROUND_IOU <= value < FOREGROUND_IOU:
        return "localisation", g
    g, value = best(~same_class)
    if g is not None and value >= FOREGROUND_IOU:
        return "classification", g
    g_same, value_same = best(same_class & used)
    if g_same is not None and value_same >= FOREGROUND_IOU:
        return "duplicate", None
    if g is not None and value >= BACKGROUND_IOU:
        return "both", None
    return "background", None


def _class_ap50(match, fix=None):
    """{category id: AP50} over the categories with ground truth or detections, with one error
    type fixed (module docstring) or none."""
    entries, num_gt = {}, {}
    for key, category in match.gt_category.items():
        num_gt[category] = num_gt.get(category, 0) + 1
    claimed = set(match.found)
    for d in match.detections:  # best first overall, so a fixed error claims its box in rank order
        category, hit = d.category_id, d.hit
        if not hit and d.error == fix:
            if fix in ("localisation", "classification") and d.target not in claimed:
                claimed.add(d.target)
                category, hit = match.gt_category[d.target], True
            else:
                continue
        entries.setdefault(category, []).append((d.score, hit))
    if fix == "missed":
        explained = {d.target for d in match.detections if d.error in ("localisation", "classification")}
        for key, category in match.gt_category.items():
            if key not in match.found and key not in explained:
                num_gt[category] -= 1
    categories = sorted(set(num_gt) | set(entries))
    return {
        c: coco_ap([s for s, _ in entries.get(c, [])], [h for _, h in entries.get(c, [])], num_gt.get(c, 0))
        for c in categories
    }


def error_breakdown(coco, detections, image_ids, worst=5):
    """AP50 points lost to each error type, overall and for the `worst` classes by AP50, and the
    count of each type:
    {"AP50": .., "overall": {type: points}, "counts": {type: n}, "per_class": [{category_id, name,
    AP50, counts, points}]}.
    The overall AP50 is the mean over the classes that have ground truth (COCOeval's)."""
    match = match_detections(coco, sorted(detections, key=lambda d: -d["score"]), image_ids)
    match.detections.sort(key=lambda d: -d.score)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    with_gt = sorted(set(match.gt_category.values()))
    base = _class_ap50(match)
    fixed = {t: _class_ap50(match, t) for t in ERROR_TYPES}

    def mean(aps):
        return float(np.mean([aps.get(c, 0.0) for c in with_gt])) if with_gt else 0.0

    counts = _error_counts(match)
    overall = {t: 100 * (mean(fixed[t]) - mean(base)) for t in ERROR_TYPES}
    per_class = [
        {
            "category_id": c,
            "name": names.get(c, str(c)),
            "AP50": base[c],
            "counts": _error_counts(match, c),
            "points": {t: 100 * (fixed[t].get(c, 0.0) - base[c]) for t in ERROR_TYPES},
        }
        for c in with_gt
    ]
    per_class.sort(key=lambda r: (r["AP50"], r["name"]))
    return {"AP50": mean(base), "overall": overall, "counts": counts, "per_class": per_class[:worst]}


def _error_counts(match, category=None):
    counts = {t: 0 for t in ERROR_TYPES}
    for d in match.detections:
        if not d.hit and (category is None or d.category_id == category):
            counts[d.error] += 1
    explained = {d.target for d in match.detections if d.error in ("localisation", "classification")}
    for key, cls in match.gt_category.items():
        if key not in match.found and key not in explained and category in (None, cls):
            counts["missed"] += 1
    return counts


def format_error_table(breakdown):
    lines = [f" AP50 {100 * breakdown['AP50']:.2f}; AP50 points each error type costs (count):"]
    lines += [f"   {t:<15} {breakdown['overall'][t]:6.2f} ({breakdown['counts'][t]})" for t in ERROR_TYPES]
    return "\n".join(lines)


def confusion_matrix(coco, detections, image_ids, category_ids, score_threshold=0.3):
    """(K + 1, K + 1) counts at IoU 0.5: row = ground-truth class, column = detected class, in
    `category_ids` order, the last row / column background. Per image, detections with score >=
    score_threshold, best first, each take the unmatched box (any class) of highest IoU >= 0.5:
    [its class, detected class]; a detection taking none counts as [background, detected class],
    a box nobody took as [its class, background]."""
    position = {c: i for i, c in enumerate(category_ids)}
    background = len(category_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    ground_truth = _ground_truth_by_image(coco, image_ids)
    by_image = {}
    for d in detections:
        if d["score"] >= score_threshold and d["image_id"] in ground_truth:
            by_image.setdefault(d["image_id"], []).append(d)
    for image_id, boxes in ground_truth.items():
        dets = sorted(by_image.get(image_id, []), key=lambda d: -d["score"])
        iou = box_iou_xywh([d["bbox"] for d in dets], [b["bbox"] for b in boxes])
        used = np.zeros(len(boxes), bool)
        for i, d in enumerate(dets):
            free = np.flatnonzero(~used)
            column = position[d["category_id"]]
            if len(free) and iou[i, free].max() >= FOREGROUND_IOU:
                g = free[np.argmax(iou[i, free])]
                used[g] = True
                matrix[position[boxes[g]["category_id"]], column] += 1
            else:
                matrix[background, column] += 1
        for g in np.flatnonzero(~used):
            matrix[position[boxes[g]["category_id"]], background] += 1
    return matrix


def image_error_counts(match):
    """{image_id: number of wrong detections + missed boxes} (the report's 'most errors')."""
    counts = {}
    for d in match.detections:
        if not d.hit:
            counts[d.image_id] = counts.get(d.image_id, 0) + 1
    for key in match.gt_category:
        if key not in match.found:
            counts[key[0]] = counts.get(key[0], 0) + 1
    return counts
