"""Detection on image files (infer.py): list the inputs, run a runtime, draw, write JSON."""

import glob
import os

import numpy as np

from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.core.atomic import write_json_atomic
from nasfpn.core.files import IMAGE_SUFFIXES, image_files_in
from nasfpn.core.interrupts import report_progress
from nasfpn.data.coco_format import class_names_and_ids, model_class_names_and_ids
from nasfpn.core.pictures import draw_labelled_boxes, line_thickness, write_image_atomic
from nasfpn.core.storage import check_name_length, storage_errors
from nasfpn.inference.detections import coco_detection, detections_from_graph, detections_of_image
from nasfpn.model_files.description import config_for_model
from nasfpn.inference.open_model import open_model
from nasfpn.inference.runtimes import model_batch_size, returns_detections, run_padded
from nasfpn.inference.tta import with_test_time_augmentation

DETECTIONS_FILE = "detections.json"
INFER_RESULT_FILES = (DETECTIONS_FILE, "*_det.jpg")  # what makes a folder another run's results


def list_images(spec):
    """Sorted image paths from a file, a folder (its image files) or a glob pattern."""
    if not spec:
        raise UserError("--image: give an image file, a folder or a glob pattern like 'imgs/*.jpg'")
    if os.path.isdir(spec):
        paths = image_files_in(spec)
    elif os.path.isfile(spec):
        paths = [spec]
    else:
        paths = [p for p in glob.glob(spec) if os.path.isfile(p)]
    if not paths:
        raise UserFileNotFoundError(
            f"--image={spec}: no image files found (expected a file, a folder "
            f"with {'/'.join(IMAGE_SUFFIXES)} files, or a glob that matches files)"
        )
    paths = sorted(paths)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise UserError(
            f"--image={spec}: several images share the name(s) {duplicates}; their "
            "outputs would overwrite each other"
        )
    return paths


def class_colour(class_index):
    """A fixed, well-spread BGR colour per class (golden-ratio hue steps)."""
    import cv2

    hue = int((class_index * 0.618034 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image_rgb, boxes_xyxy, scores, classes, names):
    """A BGR copy of the image with a box and 'name score' label per detection; labels are placed
    so that none hides another (nasfpn/core/labels.py), the highest scores first, and drawn
    after every box."""
    import cv2

    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    thickness = line_thickness(canvas.shape)
    font_scale = max(0.3, min(canvas.shape[:2]) / 1200)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")  # best placed first
    draw_labelled_boxes(
        canvas,
        [boxes_xyxy[i] for i in order],
        [f"{names[int(classes[i])]} {scores[i]:.2f}" for i in order],
        [class_colour(int(classes[i])) for i in order],
        thickness,
        font_scale,
        label_on_fill=True,
    )
    return canvas


def image_id_for(path, position, ids_by_name):
    """The annotation file's id for this file name, else a numeric stem, else the position."""
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    if name in ids_by_name or stem in ids_by_name:
        return int(ids_by_name.get(name, ids_by_name.get(stem)))
    return int(stem) if stem.isdigit() else position


class DetectionRun:
    """What detect_images did: the COCO result entries and the (file, reason) of each skipped
    image (undecodable or truncated; the others were processed and written)."""

    def __init__(self):
        self.results = []
        self.skipped = []
        self.processed = 0


def check_class_count(scores, names, path):
    """The model's score columns must be the class list's length (background included)."""
    if scores.shape[-1] != len(names):
        raise UserError(
            f"{path}: the model scores {scores.shape[-1]} classes (background "
            f"included) but the class list has {len(names)} (--num_classes, "
            "--anno_path or --coco_classes must match the model)"
        )


def detect_images(
    runtime,
    paths,
    img_shape,
    postprocess,
    names,
    output_dir,
    score_threshold,
    to_category=None,
    ids_by_name=None,
    progress=True,
    log=None,
    draw_score_threshold=None,
):
    """Run `runtime` on each image (resized to `img_shape`; its boxes and scores post-processed as
    the postprocess section says); write <stem>_det.jpg and detections.json into output_dir.

    JSON entries are COCO results (image_id, category_id, bbox [x, y, w, h] in original pixels,
    score) plus file_name and category_name, for scores >= score_threshold. category_id comes from
    `to_category` (class index -> annotation category id) when given, and a class the annotation
    file lacks is drawn but left out of the JSON (its index could be another category's id there,
    as in eval.py); without a mapping category_id is the class index. The images show scores >=
    draw_score_threshold (None: score_threshold), so pictures can stay uncluttered while the JSON
    keeps the low-score detections a metric needs. Images go through the model in batches of its
    input batch size. An image that cannot be decoded or is truncated is skipped and reported
    (logged with its reason, listed in the returned DetectionRun.skipped); detections.json is
    complete for the others. If no image at all can be decoded, ImageDecodeError names the first
    one and nothing is written."""
    from nasfpn.data.transforms import ImageDecodeError

    os.makedirs(output_dir, exist_ok=True)
    thresholds = (score_threshold, score_threshold if draw_score_threshold is None else draw_score_threshold)
    to_category = to_category or {}
    ids_by_name = ids_by_name or {}
    run = DetectionRun()
    batch_size = model_batch_size(runtime)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="infer", unit="img")
    report_progress(
        lambda: (
            f"{run.processed} of {len(paths)} image(s) drawn (<stem>_det.jpg, complete) in "
            f"{output_dir}; {DETECTIONS_FILE} was not written (run again with --overwrite=True for all)"
        )
    )
    for start in range(0, len(paths), batch_size):
        decoded = _decode_batch(paths, start, batch_size, img_shape, run, log)
        if bar:
            bar.update(min(batch_size, len(paths) - start))
        if not decoded:
            continue
        images = [(path, image, inputs) for _, path, image, inputs in decoded]
        for (position, path, image, _), kept in zip(
            decoded, detect_batch(runtime, images, img_shape, postprocess, names)
        ):
            _write_image_detections(
                run, position, path, image, kept, names, output_dir, thresholds, to_category, ids_by_name
            )
    if bar:
        bar.close()
    if not run.processed:
        raise ImageDecodeError(
            f"none of the {len(paths)} image(s) could be decoded; first: {run.skipped[0][1]}"
        )
    with storage_errors(output_dir, "writing the detections into"):
        write_json_atomic(os.path.join(output_dir, DETECTIONS_FILE), run.results)
    report_progress(lambda: f"every output is complete in {output_dir}")
    return run


def _decode_batch(paths, start, batch_size, img_shape, run, log):
    """(position, path, RGB image, network input) of the decodable images among
    paths[start:start + batch_size]; the others are recorded in run.skipped."""
    from nasfpn.data.image_files import read_image_file
    from nasfpn.data.transforms import ImageDecodeError, preprocess_image

    decoded = []
    for position in range(start, min(start + batch_size, len(paths))):
        try:
            _, image = read_image_file(paths[position])
        except ImageDecodeError as exc:
            run.skipped.append((paths[position], str(exc)))
            if log:
                log.warning("skipped %s", exc)
            continue
        decoded.append((position, paths[position], image, preprocess_image(image, img_shape)))
    return decoded


def detect_batch(runtime, images, img_shape, postprocess, names):
    """The kept detections (boxes x1y1x2y2 in each image's pixels, scores, classes) of at most one
    model batch of (source, RGB image, network input of `img_shape`) through `runtime`, post-processed
    as the postprocess section says: infer.py's and nasfpn.Detector's one path from images to
    detections."""
    outputs = run_padded(runtime, np.stack([inputs for _, _, inputs in images]), model_batch_size(runtime))
    return [
        _kept_detections(runtime, [o[i] for o in outputs], image, img_shape, postprocess, names, source)
        for i, (source, image, _) in enumerate(images)
    ]


def reported(scores, classes, score_threshold, to_category):
    """Which kept detections are results (detections.json's entries, nasfpn.Detector's): scores >=
    score_threshold, and with a class -> category mapping only the classes it maps."""
    keep = scores >= score_threshold
    if to_category:
        keep &= np.isin(classes, np.array(sorted(to_category), dtype=np.int64))
    return keep


def _kept_detections(runtime, outputs, image, img_shape, postprocess, names, path):
    """One image's detections (boxes x1y1x2y2 in its pixels, scores, classes): post-processed
    here from boxes and scores, or a detections graph's rows rescaled from the input size."""
    if returns_detections(runtime):
        return detections_from_graph(*outputs, image.shape[:2], img_shape)
    boxes, scores = outputs
    check_class_count(scores, names, path)
    return detections_of_image(
        boxes,
        scores,
        image.shape[:2],
        postprocess.min_score,
        postprocess.nms_threshold,
        postprocess.max_boxes,
    )


def _write_image_detections(
    run, position, path, image, kept, names, output_dir, thresholds, to_category, ids_by_name
):
    """Write one image's detections `kept` as <stem>_det.jpg (scores >= the drawing threshold)
    and add its COCO entries (scores >= the JSON threshold) to run."""
    json_threshold, draw_threshold = thresholds
    kept_boxes, kept_scores, kept_classes = kept
    drawn = kept_scores >= draw_threshold
    write_image_atomic(
        drawn_image_path(output_dir, path),
        draw_detections(image, kept_boxes[drawn], kept_scores[drawn], kept_classes[drawn], names),
    )
    image_id = image_id_for(path, position, ids_by_name)
    run.processed += 1
    keep = reported(kept_scores, kept_classes, json_threshold, to_category)
    for box, score, cls in zip(kept_boxes[keep], kept_scores[keep], kept_classes[keep]):
        entry = coco_detection(image_id, to_category.get(int(cls), int(cls)), box, score)
        run.results.append({**entry, "file_name": os.path.basename(path), "category_name": names[int(cls)]})


def result_classes(anno_path, model, model_file, description, log):
    """(class names by index, class index -> category id, file name -> image id) of the results:
    the model's own classes when its file (`model_file`) carries them, else `anno_path`'s
    (--anno_path) or the model section's coco_classes."""
    if description is not None and description.class_names is not None:
        return model_class_names_and_ids(anno_path, description, model_file, log)
    return class_names_and_ids(anno_path, model.coco_classes, model.num_classes)


def drawn_image_path(output_dir, image_path):
    """Where infer.py draws the detections of `image_path`: <output_dir>/<stem>_det.jpg."""
    return os.path.join(output_dir, f"{os.path.splitext(os.path.basename(image_path))[0]}_det.jpg")


def check_drawn_image_names(paths, output_dir):
    """StorageError, before the model loads, for an image whose drawn copy's name would not fit
    the file system (with the temporary prefix): the run would otherwise stop at that image."""
    for path in paths:
        check_name_length(drawn_image_path(output_dir, path), f"{path} (its drawn copy; rename the image)")


def detect_from_config(cfg, log):
    """infer.py: the config's model on the inference section's image (a file, folder or glob);
    writes the drawn images and detections.json into its output_dir and returns the DetectionRun.
    The inputs and the class list are checked before the model is opened, and the output folder
    claimed (one writer; another run's results refused unless --overwrite: docs/troubleshooting.md)."""
    from nasfpn.core.storage import claim_output_dir

    cfg.inference.check_model_choice()
    cfg, description = config_for_model(cfg, cfg.inference.model_file)
    inference, model = cfg.inference, cfg.model
    paths = list_images(inference.image)
    names, to_category, ids_by_name = result_classes(
        cfg.data.anno_path, model, inference.model_file, description, log
    )
    check_drawn_image_names(paths, inference.output_dir)
    # One writer per folder, room for the pictures (about the inputs' size): before the model loads.
    need = sum(os.path.getsize(p) for p in paths) + 64 * 1024
    with claim_output_dir(
        inference.output_dir, "output_dir", INFER_RESULT_FILES, cfg.job.overwrite, need
    ) as output_dir:
        runtime, _ = open_model(cfg, log, num_classes=len(names))
        runtime = with_test_time_augmentation(
            runtime, inference.tta_flip, inference.tta_scales, model.img_shape, cfg.anchors
        )
        run = detect_images(
            runtime,
            paths,
            model.img_shape,
            cfg.postprocess,
            names,
            output_dir,
            inference.score_threshold,
            to_category,
            ids_by_name,
            log=log,
            draw_score_threshold=inference.draw_score_threshold,
        )
        log_detection_run(log, run, len(paths), inference)
    return run


def log_detection_run(log, run, num_paths, inference):
    """What infer.py did, in a line (and a warning naming the skipped images)."""
    log.info(
        "%d images, %d detections with score >= %.2f; images and detections.json in %s",
        run.processed,
        len(run.results),
        inference.score_threshold,
        os.path.abspath(inference.output_dir),
    )
    if run.skipped:
        log.warning(
            "%d of %d images skipped (not decodable or truncated): %s",
            len(run.skipped),
            num_paths,
            ", ".join(os.path.basename(p) for p, _ in run.skipped),
        )
