"""The evaluation's analysis outputs beside metrics.json: per-class table, error breakdown,
confusion matrix, precision-recall curves, and report.html, one self-contained page (images
embedded as base64) with the tables, the plots and the images with the most errors.

Every file is written under a temporary name and renamed (nasfpn/core/atomic.py)."""

import base64
import contextlib
import html
import os

import numpy as np

from nasfpn.core.atomic import atomic_path
from nasfpn.core.pictures import draw_box, draw_labelled_boxes, line_thickness
from nasfpn.evaluation.analysis import (
    ERROR_TYPES,
    confusion_matrix,
    error_breakdown,
    format_error_table,
    format_per_class_table,
    image_error_counts,
    match_detections,
)
from nasfpn.core.atomic import write_json_atomic
from nasfpn.core.errors import RunError, UserError
from nasfpn.core.storage import storage_error
from nasfpn.evaluation.coco_metrics import STAT_KEYS, STAT_NAMES
from nasfpn.evaluation.scoring import EVAL_RESULT_FILES
from nasfpn.evaluation.plots import plot_confusion_matrix, plot_error_breakdown, plot_pr_curves

REPORT_NAME = "report.html"
PLOT_NAMES = {
    "pr_curves": "pr_curves.png",
    "errors": "error_breakdown.png",
    "confusion": "confusion_matrix.png",
}
# Everything eval.py writes into --eval_output_dir (what --overwrite=True replaces; the rest of an
# earlier folder is the user's and is carried over: nasfpn/core/storage.py:replacing_folder).
EVAL_OUTPUT_FILES = (*EVAL_RESULT_FILES, "analysis.json", REPORT_NAME, *PLOT_NAMES.values())
GT_COLOUR = (0, 255, 0)  # RGB: ground truth green
DET_COLOUR = (230, 0, 0)  # detections red
MIN_PICTURE_SIDE = 480  # pixels of the longer side a picture is enlarged to, at least


def mindrecord_image_loader(mindrecord):
    """image_id -> RGB array (or None) from an eval MindRecord, read only for the ids asked."""

    def load(image_ids):
        from mindspore.mindrecord import FileReader
        from nasfpn.data.transforms import decode_image

        wanted, images = set(int(i) for i in image_ids), {}
        reader = FileReader(mindrecord, columns=["img_id", "image"])
        try:
            for row in reader.get_next():
                image_id = int(row["img_id"][0])
                if image_id in wanted:
                    images[image_id] = decode_image(bytes(row["image"]))
        finally:
            reader.close()
        return images

    return load


def draw_errors(image_rgb, ground_truth, detections, score_threshold):
    """An RGB copy with ground-truth boxes (green) and detections >= score_threshold (red,
    'name score'); boxes are COCO [x, y, w, h]."""
    import cv2

    # small images are enlarged (nearest neighbour, whole factors) so labels stay readable
    zoom = max(1, -(-MIN_PICTURE_SIDE // max(image_rgb.shape[:2])))
    canvas = np.ascontiguousarray(
        cv2.resize(image_rgb, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    )
    thickness = line_thickness(canvas.shape)
    # labels after every box, the highest scores placed first, none hiding another (core/labels.py)
    shown = sorted((d for d in detections if d["score"] >= score_threshold), key=lambda d: -d["score"])
    draw_labelled_boxes(
        canvas,
        [_zoomed_corners(d["bbox"], zoom) for d in shown],
        [f"{d['name']} {d['score']:.2f}" for d in shown],
        [DET_COLOUR] * len(shown),
        thickness,
    )
    for box in ground_truth:  # drawn last and thicker, so detections cannot hide it
        draw_box(canvas, _zoomed_corners(box["bbox"], zoom), GT_COLOUR, thickness + 1)
    return canvas


def _zoomed_corners(bbox, zoom):
    x, y, w, h = (v * zoom for v in bbox)
    return x, y, x + w, y + h


def _png_data_uri(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _jpeg_data_uri(image_rgb):
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _table(headers, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value):
    return "-" if value < 0 else f"{value:.4f}"


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
    "text-align:right}th{background:#eee}img{max-width:100%}"
    ".images img{max-width:48%;margin:4px}"
)


SOURCE_ROWS = (  # metrics.json key -> what the report calls it
    ("model_path", "model file"),
    ("anno_path", "annotation file (ground truth)"),
    ("anno_sha256", "its sha256"),
    ("mindrecord", "MindRecord"),
    ("mindrecord_created", "MindRecord made"),
    ("mindrecord_source", "MindRecord made from"),
    ("evaluated_at", "evaluated (UTC)"),
)


def render_report(title, stats, per_class, breakdown, plot_uris, error_images, sources=None):
    """The report's HTML text. error_images: [(caption, data URI)]; sources: what was evaluated
    (evaluate.result_sources, plus anno_path), shown first."""
    rows = [(name, (sources or {}).get(key)) for key, name in SOURCE_ROWS]
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        '<section id="sources"><h2>What was evaluated</h2>',
        _table(("", ""), [(name, value) for name, value in rows if value]),
        "</section>",
        '<section id="summary"><h2>COCO metrics</h2>',
        _table(("metric", "value"), [(n, f"{stats[k]:.4f}") for n, k in zip(STAT_NAMES, STAT_KEYS)]),
        "</section>",
        '<section id="per-class"><h2>Per class (worst AP first)</h2>',
        _table(
            ("class", "AP", "AP50", "AP75", "AR100", "boxes"),
            [
                (
                    r["name"],
                    _number(r["AP"]),
                    _number(r["AP50"]),
                    _number(r["AP75"]),
                    _number(r["AR100"]),
                    r["num_gt"],
                )
                for r in per_class
            ],
        ),
        "</section>",
        '<section id="errors"><h2>Error breakdown (AP50 points each error type costs)</h2>',
        _table(
            ("class", "AP50") + ERROR_TYPES,
            [
                ("all classes", f"{100 * breakdown['AP50']:.2f}")
                + tuple(f"{breakdown['overall'][t]:.2f}" for t in ERROR_TYPES)
            ]
            + [
                (r["name"], f"{100 * r['AP50']:.2f}") + tuple(f"{r['points'][t]:.2f}" for t in ERROR_TYPES)
                for r in breakdown["per_class"]
            ],
        ),
        f'<img alt="error breakdown" src="{plot_uris["errors"]}"></section>',
        '<section id="pr-curves"><h2>Precision-recall curves</h2>'
        f'<img alt="precision-recall curves" src="{plot_uris["pr_curves"]}"></section>',
        '<section id="confusion"><h2>Confusion matrix at IoU 0.5</h2>'
        f'<img alt="confusion matrix" src="{plot_uris["confusion"]}"></section>',
        '<section id="worst-images"><h2>Images with the most errors</h2>'
        '<p>ground truth green, detections red</p><div class="images">',
    ]
    sections += [
        f'<figure><img alt="{html.escape(c)}" src="{uri}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for c, uri in error_images
    ]
    sections.append("</div></section>")
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )


def write_text_atomic(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


@contextlib.contextmanager
def analysis_errors(output_dir, kept_earlier=False):
    """The analysis is written after predictions.json and metrics.json: a fault in it says they
    are complete (or, `kept_earlier`: that the run wrote into a fresh folder, now removed, and
    output_dir holds the earlier run's files as they were). A storage fault (full disk, file size
    limit) is a StorageError (exit 2); a value matplotlib cannot draw a RunError (exit 1), not a
    traceback."""
    complete = f"predictions.json and metrics.json in {output_dir} are complete"
    if kept_earlier:
        complete = f"{output_dir} is left as it was (--overwrite=True replaces it only after a complete run)"
    try:
        yield
    except UserError:
        raise
    except OSError as exc:
        error = storage_error(
            exc, output_dir, f"{complete}; free some space and evaluate again for the report"
        )
        if error is None:
            raise RunError(f"writing the analysis into {output_dir} failed ({exc}); {complete}") from None
        raise error from None
    except (ValueError, RuntimeError) as exc:  # matplotlib's errors for a label it cannot lay out
        first_line = next((line for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
        raise RunError(
            f"the plots and report.html could not be drawn "
            f"({exc.__class__.__name__}: {first_line.strip()[:200]}); {complete}"
        ) from None


def write_analysis(
    collector, stats, output_dir, load_images=None, num_images=8, score_threshold=0.3, log=None
):
    """Error breakdown, confusion matrix, plots and report.html of an evaluated collector (its
    per-class rows in collector.per_class) into output_dir; returns the breakdown.
    load_images(ids) -> {id: RGB} gives the pictures of the worst images (None: no pictures).
    score_threshold: the confusion matrix's and the pictures' minimum score."""
    coco, detections, image_ids = collector.coco, collector.detections, collector.image_ids
    names = {c["id"]: c["name"] for c in coco["categories"]}
    breakdown = error_breakdown(coco, detections, image_ids)
    category_ids = sorted(names)
    matrix = confusion_matrix(coco, detections, image_ids, category_ids, score_threshold)
    write_json_atomic(
        os.path.join(output_dir, "analysis.json"),
        {
            "errors": breakdown,
            "confusion_matrix": {
                "labels": [names[c] for c in category_ids] + ["background"],
                "score_threshold": score_threshold,
                "counts": matrix.tolist(),
            },
        },
    )
    paths = {key: os.path.join(output_dir, name) for key, name in PLOT_NAMES.items()}
    if collector.evaluator is not None:
        plot_pr_curves(collector.evaluator, collector.per_class, paths["pr_curves"])
    else:  # no detections: COCOeval was not run; the curves are all zero
        plot_pr_curves_empty(paths["pr_curves"])
    plot_error_breakdown(breakdown, paths["errors"])
    plot_confusion_matrix(matrix, [names[c] for c in category_ids], paths["confusion"])
    pictures = _worst_images(coco, detections, image_ids, load_images, num_images, score_threshold, names)
    text = render_report(
        f"Evaluation of {len(image_ids)} images",
        stats,
        collector.per_class,
        breakdown,
        {k: _png_data_uri(p) for k, p in paths.items()},
        pictures,
        {"anno_path": os.path.abspath(collector.anno_path), **collector.sources},
    )
    write_text_atomic(os.path.join(output_dir, REPORT_NAME), text)
    if log:
        log.info("per class, worst first:\n%s", format_per_class_table(collector.per_class))
        log.info("error breakdown:\n%s", format_error_table(breakdown))
    return breakdown


def plot_pr_curves_empty(path):
    from nasfpn.evaluation.plots import _figure, save_figure

    plt, figure = _figure(6, 4)
    axes = figure.add_subplot(1, 1, 1)
    axes.set(title="no detections", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1))
    return save_figure(plt, figure, path)


def _worst_images(coco, detections, image_ids, load_images, count, score_threshold, names):
    if not load_images or not count:
        return []
    shown = [d for d in detections if d["score"] >= score_threshold]
    errors = image_error_counts(match_detections(coco, shown, image_ids))
    worst = sorted(errors, key=lambda i: (-errors[i], i))[:count]
    images = load_images(worst)
    ground_truth, dets = {}, {}
    for a in coco["annotations"]:
        ground_truth.setdefault(a["image_id"], []).append(a)
    for d in shown:
        dets.setdefault(d["image_id"], []).append({**d, "name": names.get(d["category_id"], "?")})
    files = {i["id"]: i.get("file_name", str(i["id"])) for i in coco["images"]}
    return [
        (
            f"{files.get(i, i)}: {errors[i]} errors",
            _jpeg_data_uri(draw_errors(images[i], ground_truth.get(i, []), dets.get(i, []), score_threshold)),
        )
        for i in worst
        if i in images
    ]
