"""COCO mAP from the Ascend 310 app's (or its twin's) .bin files
(docs/architecture.md#export-and-the-ascend-310-files).

For every image of the dataset folder (listed as the app lists them): read <stem>_0.bin (boxes) and
<stem>_1.bin (scores), reshape with the anchor count and class count derived from the config, find
the image's COCO id, height and width in the annotation file by file name, and hand the outputs to
the same post-processing and COCO evaluation that eval.py uses (src.evaluation.evaluate).
"""
import os

import numpy as np

from ..boxes import AnchorSpec
from ..evaluation.evaluate import DetectionCollector
from .app310_twin import image_stem, list_image_files, result_file_paths
from ..errors import UserError


class ResultFileError(UserError):
    """A .bin file that is missing or does not hold the expected number of float32 values."""


def read_image_outputs(result_dir, stem, num_anchors, num_classes):
    """(boxes [A, 4], scores [A, C]) float32 of one image, checked against the expected sizes."""
    arrays = []
    for path, columns in zip(result_file_paths(result_dir, stem), (4, num_classes)):
        if not os.path.isfile(path):
            raise ResultFileError(f"missing result file {path} for image '{stem}' (did the 310 app "
                                  "or infer_310_twin.py run on this folder?)")
        values = np.fromfile(path, dtype=np.float32)
        if values.size != num_anchors * columns:
            raise ResultFileError(
                f"{path}: {values.size} float32 values, expected {num_anchors} x {columns} = "
                f"{num_anchors * columns} (img_shape/anchor/num_classes options must match the "
                "exported model)")
        arrays.append(values.reshape(num_anchors, columns))
    return arrays[0], arrays[1]


def evaluate_result_files(cfg, progress=True):
    """Post-process and evaluate the .bin files of cfg.result_path for the images of cfg.dataset_path.

    Returns (stats dict, DetectionCollector); predictions.json and metrics.json go to
    cfg.eval_output_dir, as for eval.py.
    """
    collector = DetectionCollector.from_config(cfg, cfg.anno_path)
    # The image id comes from the annotation file by file name (the release parsed it from the name,
    # which failed for non-numeric names); height/width are the original size for rescaling.
    images_by_name = {os.path.basename(img["file_name"]): img for img in collector.coco["images"]}
    num_anchors = AnchorSpec.from_config(cfg).num_anchors
    for path in _progress(list_image_files(cfg.dataset_path), progress):
        info = images_by_name.get(os.path.basename(path))
        if info is None:
            raise ValueError(f"image {path}: file name '{os.path.basename(path)}' is not in the "
                             f"annotation file {cfg.anno_path}")
        boxes, scores = read_image_outputs(cfg.result_path, image_stem(path), num_anchors,
                                           cfg.num_classes)
        collector.add(info["id"], boxes, scores, (info["height"], info["width"]))
    return collector.evaluate(cfg.eval_output_dir), collector


def _progress(items, enabled):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc="postprocess", unit="img")
