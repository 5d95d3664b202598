"""PNG plots of an evaluation: precision-recall curves, the error breakdown, the confusion matrix.

Each is drawn with matplotlib's Agg backend (no display needed) and written under a temporary
name, then renamed (nasfpn/core/atomic.py), so a failed plot never leaves a half-written PNG.

Text that comes from the dataset (class names) is drawn with math parsing off (LITERAL): a name
like '$\\frac{a}{b}$' or 'a$b' shows as written instead of going to matplotlib's mathtext parser,
which would typeset it or fail the whole evaluation on an unbalanced '$'."""

import numpy as np

from nasfpn.core.atomic import atomic_path
from nasfpn.evaluation.analysis import AREA_ALL, ERROR_TYPES, IOU_50, IOU_75, MAX_DETS_100, RECALL_POINTS

PR_CURVES = (("IoU 0.5", lambda p: p[IOU_50]), ("IoU 0.75", lambda p: p[IOU_75]), ("IoU 0.5:0.95", None))
CLASSES_PER_ROW = 4
LITERAL = {"parse_math": False}  # Text properties for strings from the data


def _figure(width, height):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def save_figure(plt, figure, path):
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(figure)
    return path


def _masked_mean(values, axis):
    """Mean over `axis` of the entries > -1 (COCOeval's 'no ground truth'); -1 where none."""
    valid = values > -1
    total = np.where(valid, values, 0).sum(axis=axis)
    count = valid.sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), -1)


def precision_curves(precision, class_index=None):
    """{label: precision at the 101 recall points} at IoU .5, .75 and averaged over .5:.95, for
    one class index of COCOeval's precision array or averaged over the classes (None)."""
    p = precision[:, :, :, AREA_ALL, MAX_DETS_100]  # (IoU, recall, class)
    p = _masked_mean(p, axis=2) if class_index is None else p[:, :, class_index]
    curves = {}
    for label, pick in PR_CURVES:
        curves[label] = _masked_mean(p, axis=0) if pick is None else pick(p)
    return curves


def plot_pr_curves(evaluator, per_class_rows, path, max_classes=12):
    """Overall curves and one panel per class (the `max_classes` worst, COCOeval's order kept
    for looking up arrays) in one PNG."""
    precision = evaluator.eval["precision"]
    index_of = {c: k for k, c in enumerate(evaluator.params.catIds)}
    shown = [r for r in per_class_rows if r["AP"] >= 0][:max_classes]
    rows = 1 + (len(shown) + CLASSES_PER_ROW - 1) // CLASSES_PER_ROW
    plt, figure = _figure(4 * CLASSES_PER_ROW, 3.2 * rows)
    grid = figure.add_gridspec(rows, CLASSES_PER_ROW)
    panels = [(figure.add_subplot(grid[0, :2]), "all classes", None)]
    panels += [
        (
            figure.add_subplot(grid[1 + i // CLASSES_PER_ROW, i % CLASSES_PER_ROW]),
            f"{r['name']} (AP {r['AP']:.3f})",
            index_of[r["category_id"]],
        )
        for i, r in enumerate(shown)
    ]
    for axes, title, k in panels:
        for label, curve in precision_curves(precision, k).items():
            axes.plot(RECALL_POINTS, np.clip(curve, 0, None), label=label)
        axes.set_title(title, **LITERAL)
        axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        axes.grid(alpha=0.3)
    panels[0][0].legend(loc="lower left")
    figure.tight_layout()
    return save_figure(plt, figure, path)


def plot_error_breakdown(breakdown, path):
    """Bars: AP50 points lost to each error type, overall and for the worst classes."""
    groups = [("all classes", breakdown["overall"])]
    groups += [(r["name"], r["points"]) for r in breakdown["per_class"]]
    plt, figure = _figure(2 + 1.6 * len(groups), 4)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(ERROR_TYPES)
    x = np.arange(len(groups))
    for i, error in enumerate(ERROR_TYPES):
        axes.bar(
            x + (i - len(ERROR_TYPES) / 2 + 0.5) * width, [g[1][error] for g in groups], width, label=error
        )
    axes.set_xticks(x, [g[0] for g in groups], rotation=20, **LITERAL)
    axes.set(
        ylabel="AP50 points gained by fixing", title=f"Error breakdown (AP50 {100 * breakdown['AP50']:.1f})"
    )
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return save_figure(plt, figure, path)


def plot_confusion_matrix(matrix, names, path):
    """Counts with rows = ground truth, columns = detections; the last row/column background.
    Colour is the row-normalised share (log-free, so a large background count cannot hide the
    rest of its row); the counts are written in the cells when the matrix is small."""
    labels = list(names) + ["background"]
    size = len(labels)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(24, 3 + 0.35 * size)
    plt, figure = _figure(side + 1, side)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the ground-truth row")
    axes.set_xticks(range(size), labels, rotation=90, fontsize=7 if size > 20 else 9, **LITERAL)
    axes.set_yticks(range(size), labels, fontsize=7 if size > 20 else 9, **LITERAL)
    axes.set(xlabel="detected as", ylabel="ground truth", title="Confusion matrix at IoU 0.5")
    if size <= 20:
        for r in range(size):
            for c in range(size):
                if matrix[r, c]:
                    axes.text(
                        c,
                        r,
                        str(matrix[r, c]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if share[r, c] > 0.5 else "black",
                    )
    figure.tight_layout()
    return save_figure(plt, figure, path)
