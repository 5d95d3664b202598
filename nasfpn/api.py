"""The Python API: detections, evaluation and export from an application, without a subprocess.

    from nasfpn import Detector, evaluate, export

    detector = Detector.load("model.ckpt")             # or .mindir / .onnx / OpenVINO .xml, or "hub"
    for result in detector.predict("photos/"):         # a file, a folder, a glob, an RGB array, a list
        print(result.source, result.boxes, result.scores, result.labels)

    stats = evaluate("model.ckpt", mindrecord_dir="mr", coco_root="coco")   # eval.py's metrics
    path = export("model.ckpt", file_name="nasfpn", file_format="ONNX")    # export.py's file

Options are the command lines' config keys as keywords (`score_threshold=0.5`,
`device_target="GPU"`, `config_path="my.yaml"`); a checkpoint or export of this project carries its
network options and class list, so a model file is usually all that is needed. The detections are
infer.py's (the same model opening, batching and post-processing: nasfpn/inference/detect_images.py),
and the errors are the commands': `UserError` (nasfpn/core/errors.py) with one line naming what to fix.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nasfpn.config.flat import Config
from nasfpn.config.sections import PostprocessConfig
from nasfpn.core.errors import UserError

ImageInput = Union[str, "os.PathLike[str]", np.ndarray]
Images = Union[ImageInput, Sequence[ImageInput]]
ModelSource = Union[str, "os.PathLike[str]"]

HUB = "hub"  # Detector.load(HUB): the published checkpoint (hub/nasfpn.md), like --hub
log = logging.getLogger("nasfpn")


@dataclass(frozen=True)
class Detections:
    """One image's detections, best first within each class (infer.py's detections.json rows).

    boxes: (N, 4) float32 x1, y1, x2, y2 in the image's own pixels; scores: (N,) float32;
    labels: N class names; class_ids: (N,) int64 class indices (1 = the first class after
    background); category_ids: (N,) int64 the dataset's category ids (detections.json's
    category_id: the model's or --anno_path's ids, else the class index); source: the file path,
    or "array[i]" for the i-th array given."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: List[str]
    class_ids: np.ndarray
    category_ids: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.scores)


def _config(model: Optional[ModelSource], options: Dict[str, Any]) -> Config:
    """The Config of the defaults (or options['config_path']), the model and the options, checked
    like a command line."""
    from nasfpn.config.flat import load_config

    options = dict(options)
    config_path = options.pop("config_path", None)
    cfg: Config = load_config([], config_path=None if config_path is None else os.fspath(config_path))
    if model is not None:
        options.update(_model_keys(model))
    return cfg.replace(**options) if options else cfg


def _model_keys(model: ModelSource) -> Dict[str, Any]:
    """The config keys that name `model`: --hub, --checkpoint_path (.ckpt) or --model_path."""
    if not isinstance(model, (str, os.PathLike)):
        raise UserError(f"model: expected a file path or {HUB!r}, got {type(model).__name__}")
    path = os.fspath(model)
    if path == HUB:
        return {"hub": True}
    if path.lower().endswith(".ckpt"):
        return {"checkpoint_path": path}
    return {"model_path": path}


class Detector:
    """A model opened once for detection on many images: `Detector.load(...)`, then `predict`."""

    def __init__(
        self,
        runtime: Any,
        img_shape: Sequence[int],
        postprocess: PostprocessConfig,
        score_threshold: float,
        names: List[str],
        to_category: Dict[int, int],
        path: str,
    ) -> None:
        self._runtime = runtime
        self.img_shape = list(img_shape)
        self.postprocess = postprocess
        self.score_threshold = float(score_threshold)
        self.class_names = list(names)  # background first
        self._to_category = dict(to_category)
        self.path = path

    @classmethod
    def load(cls, model: ModelSource, **options: Any) -> "Detector":
        """Open a checkpoint (.ckpt), an exported model (.mindir, .onnx, OpenVINO .xml) or, for
        model="hub", the published checkpoint (downloaded once to --hub_cache_dir, sha256-checked).

        `options` are config keys, as infer.py takes them: score_threshold (default 0.3: the results
        kept), device_target, anno_path (class names and category ids of a dataset), runtime, ...;
        config_path reads a config file first. UserError (one line) for a bad file or option."""
        from nasfpn.inference.detect_images import result_classes
        from nasfpn.model_files.description import config_for_model
        from nasfpn.inference.open_model import open_model
        from nasfpn.inference.tta import with_test_time_augmentation

        cfg = _config(model, options)
        cfg.inference.check_model_choice()
        cfg, description = config_for_model(cfg, cfg.inference.model_file)
        inference = cfg.inference
        names, to_category, _ = result_classes(
            cfg.data.anno_path, cfg.model, inference.model_file, description, log
        )
        runtime, path = open_model(cfg, log, num_classes=len(names))
        runtime = with_test_time_augmentation(
            runtime, inference.tta_flip, inference.tta_scales, cfg.model.img_shape, cfg.anchors
        )
        return cls(
            runtime, cfg.model.img_shape, cfg.postprocess, inference.score_threshold, names, to_category, path
        )

    def predict(self, images: Images, score_threshold: Optional[float] = None) -> List[Detections]:
        """Detections per image, in input order (a folder or glob: sorted by path, as infer.py).

        images: an image file, a folder of images, a glob pattern, an RGB uint8 array (H, W, 3)
        (OpenCV's BGR arrays need [..., ::-1]), or a list of files and arrays. score_threshold:
        None keeps the load-time --score_threshold. An unreadable file raises ImageDecodeError."""
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        from nasfpn.inference.detect_images import detect_batch
        from nasfpn.inference.runtimes import model_batch_size

        inputs = _image_inputs(images)
        batch = model_batch_size(self._runtime)
        results: List[Detections] = []
        for start in range(0, len(inputs), batch):
            prepared = [
                _prepared(source, image, self.img_shape) for source, image in inputs[start : start + batch]
            ]
            for (source, _, _), kept in zip(
                prepared,
                detect_batch(self._runtime, prepared, self.img_shape, self.postprocess, self.class_names),
            ):
                results.append(self._detections(source, kept, threshold))
        return results

    def _detections(self, source: str, kept: Tuple[np.ndarray, ...], threshold: float) -> Detections:
        from nasfpn.inference.detect_images import reported

        boxes, scores, classes = kept
        keep = reported(scores, classes, threshold, self._to_category)
        classes = np.asarray(classes[keep], np.int64)
        return Detections(
            boxes=np.asarray(boxes[keep], np.float32).reshape(-1, 4),
            scores=np.asarray(scores[keep], np.float32),
            labels=[self.class_names[int(c)] for c in classes],
            class_ids=classes,
            category_ids=np.array([self._to_category.get(int(c), int(c)) for c in classes], np.int64),
            source=source,
        )

    def __repr__(self) -> str:
        return f"Detector({self.path!r}, {len(self.class_names) - 1} classes, img_shape={self.img_shape})"


def _image_inputs(images: Images) -> List[Tuple[str, Any]]:
    """(source, a path or an array) of each image: a folder or glob expands as infer.py's --image."""
    from nasfpn.inference.detect_images import list_images

    if isinstance(images, np.ndarray):
        return [("array[0]", images)]
    if isinstance(images, (str, os.PathLike)):
        return [(path, path) for path in list_images(os.fspath(images))]
    inputs: List[Tuple[str, Any]] = []
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            inputs.append((f"array[{i}]", item))
        elif isinstance(item, (str, os.PathLike)):
            inputs.append((os.fspath(item), os.fspath(item)))
        else:
            raise UserError(f"images[{i}]: expected an image path or an RGB array, got {type(item).__name__}")
    if not inputs:
        raise UserError("images: the list is empty")
    return inputs


def _prepared(source: str, image: Any, img_shape: Sequence[int]) -> Tuple[str, np.ndarray, np.ndarray]:
    """(source, RGB uint8 image, network input) for a path (decoded as infer.py decodes) or an array."""
    from nasfpn.data.image_files import read_image_file
    from nasfpn.data.transforms import preprocess_image

    if isinstance(image, str):
        _, image = read_image_file(image)
    elif image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise UserError(
            f"{source}: expected an RGB image array of shape (H, W, 3) and dtype uint8, "
            f"got shape {tuple(image.shape)} and dtype {image.dtype}"
        )
    return source, image, preprocess_image(image, img_shape)


def _given(**values: Any) -> Dict[str, Any]:
    """The keyword arguments that were given (None: the config's default)."""
    return {key: value for key, value in values.items() if value is not None}


def evaluate(
    model: ModelSource,
    mindrecord_dir: Optional[str] = None,
    coco_root: Optional[str] = None,
    anno_path: Optional[str] = None,
    eval_output_dir: Optional[str] = None,
    **options: Any,
) -> Dict[str, Any]:
    """eval.py in-process: COCO bbox metrics of a checkpoint, an exported model or "hub" on the
    eval MindRecord in mindrecord_dir, against coco_root's (or anno_path's) annotations; options
    are eval.py's other keys. Writes predictions.json and metrics.json to eval_output_dir (default
    ./outputs/eval) as eval.py does, and returns the metrics: {"AP": ..., "AP50": ..., ...}."""
    from nasfpn.evaluation.run import evaluate_model

    options.update(
        _given(
            mindrecord_dir=mindrecord_dir,
            coco_root=coco_root,
            anno_path=anno_path,
            eval_output_dir=eval_output_dir,
        )
    )
    stats: Dict[str, Any] = evaluate_model(_config(model, options), log)
    return stats


def export(
    checkpoint: Optional[ModelSource] = None,
    file_name: Optional[str] = None,
    file_format: Optional[str] = None,
    **options: Any,
) -> str:
    """export.py in-process: the inference network of `checkpoint` (None: random weights) as
    file_name (default retinanet_nasfpn; the suffix is added) in file_format (MINDIR, AIR, ONNX;
    default MINDIR); options are export.py's other keys (export_batch_size, quantize="int8",
    export_detections=True, ...). Returns the path written (with quantize="int8", the INT8 twin's)."""
    from nasfpn.commands.export import export_model

    options.update(_given(file_name=file_name, file_format=file_format))
    if checkpoint is not None:
        options["checkpoint_path"] = os.fspath(checkpoint)
    path: str = export_model(_config(None, options), log)
    return path
