"""COCO mAP from the Ascend 310 app's (or its twin's) .bin files
(docs/architecture.md#export-and-the-ascend-310-files).

For every image of the dataset folder (listed as the app lists them): read <stem>_0.bin (boxes) and
<stem>_1.bin (scores), reshape with the anchor count and class count derived from the config, find
the image's COCO id, height and width in the annotation file by file name, and hand the outputs to
the same post-processing and COCO evaluation that eval.py uses (nasfpn.evaluation.scoring).
"""

import os

import numpy as np

from nasfpn.data.coco_format import AnnotationError
from nasfpn.core.errors import UserError
from nasfpn.evaluation.scoring import DetectionCollector
from nasfpn.deploy.app310_twin import image_stem, list_image_files, read_skipped_list, result_file_paths


class ResultFileError(UserError):
    """A .bin file that is missing or does not hold the expected number of float32 values."""


def read_image_outputs(result_dir, stem, num_anchors, num_classes):
    """(boxes [A, 4], scores [A, C]) float32 of one image, checked against the expected sizes."""
    arrays = []
    for path, columns in zip(result_file_paths(result_dir, stem), (4, num_classes)):
        if not os.path.isfile(path):
            raise ResultFileError(
                f"missing result file {path} for image '{stem}' (did the 310 app "
                "or infer_310_twin.py run on this folder?)"
            )
        values = np.fromfile(path, dtype=np.float32)
        if values.size != num_anchors * columns and columns != 4 and values.size % num_anchors == 0:
            raise ResultFileError(
                f"{path}: scores for {values.size // num_anchors} classes (background included), "
                f"but --num_classes is {num_classes}: give the --num_classes the model was "
                "exported with"
            )
        if values.size != num_anchors * columns:
            raise ResultFileError(
                f"{path}: {values.size} float32 values, expected {num_anchors} x {columns} = "
                f"{num_anchors * columns} (img_shape/anchor/num_classes options must match the "
                "exported model)"
            )
        arrays.append(values.reshape(num_anchors, columns))
    return arrays[0], arrays[1]


def annotation_entries(paths, coco, anno_path):
    """The annotation file's image entry of each image file, matched by file name (the release
    parsed the id from the name, which failed for non-numeric names); its height/width are the
    original size the boxes are scaled back to. AnnotationError names the first unknown files."""
    images_by_name = {os.path.basename(img["file_name"]): img for img in coco["images"]}
    unknown = [p for p in paths if os.path.basename(p) not in images_by_name]
    if unknown:
        others = [os.path.basename(p) for p in unknown[1:]]
        raise AnnotationError(
            f"image {unknown[0]}: file name '{os.path.basename(unknown[0])}' is not "
            f"in the annotation file {anno_path}"
            + (
                f" (nor {len(others)} more: {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
                if others
                else ""
            )
            + "; give the annotation file of these images (--anno_path)"
        )
    entries = [images_by_name[os.path.basename(p)] for p in paths]
    for info in entries:
        if not all(isinstance(info.get(k), int) and info[k] > 0 for k in ("height", "width")):
            raise AnnotationError(
                f"{anno_path}: image id {info['id']} ({info['file_name']}) needs "
                "positive integer 'height' and 'width' (boxes are scaled back "
                "to them)"
            )
    return entries


def evaluate_result_files(cfg, progress=True, log=None, output_dir=None):
    """Post-process and evaluate the .bin files of the inference section's result_path for the
    images of its dataset_path (postprocess.py), with the model, anchors and postprocess sections.

    Returns (stats dict, DetectionCollector); predictions.json and metrics.json go to
    `output_dir` (default the evaluation section's eval_output_dir), as for eval.py. Images the twin listed in skipped_images.txt (not
    decodable) are left out; postprocess.py reports them. Boxes are scaled to the size of the
    decoded image (what the model saw, as in eval.py); an annotation file that gives another size
    is named in a warning (collector.size_mismatch_warning)."""
    from nasfpn.data.image_files import read_image_file

    inference, anno_path = cfg.inference, cfg.data.anno_path
    collector = DetectionCollector.from_sections(cfg.model, cfg.postprocess, anno_path)
    num_anchors = cfg.anchors.spec(cfg.model.img_shape).num_anchors
    skipped = read_skipped_list(inference.result_path)
    paths = [p for p in list_image_files(inference.dataset_path) if os.path.basename(p) not in skipped]
    entries = annotation_entries(paths, collector.coco, anno_path)  # before reading any .bin
    for path, info in _progress(list(zip(paths, entries)), progress):
        boxes, scores = read_image_outputs(
            inference.result_path, image_stem(path), num_anchors, cfg.model.num_classes
        )
        decoded_hw = read_image_file(path)[1].shape[:2]
        collector.add(info["id"], boxes, scores, decoded_hw)
    if log and collector.size_mismatch_warning():
        log.warning("%s", collector.size_mismatch_warning())
    return collector.evaluate(output_dir or cfg.evaluation.eval_output_dir), collector


def _progress(items, enabled):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="postprocess", unit="img")
