"""Export the inference network (boxes + scores) to MINDIR, AIR (Ascend) or ONNX.

    python export.py --checkpoint_path=CKPT --file_name=retinanet_nasfpn --file_format=MINDIR \
        --device_target=CPU [--export_batch_size=1] [--img_shape=[640,640]]
    python export.py --checkpoint_path=CKPT --file_format=ONNX --quantize=int8 \
        --calibration_data=MINDRECORD_OR_IMAGE_FOLDER [--calibration_images=100]

With --quantize=int8 the float32 ONNX model is written as usual and its static INT8 twin beside it
as <file_name>_int8.onnx (nasfpn/deploy/quantize.py says how it is quantized).

With --export_detections=True (ONNX) the graph ends in final detections per image: score
threshold, per-class NMS and the per-image cap --export_max_detections run inside it
(nasfpn/deploy/detections_graph.py; with --quantize=int8 both files are detections graphs).

A checkpoint of this project carries its network options and class list: they need not be given
again, and the export carries them on (docs/checkpoints.md).
"""

import logging
from typing import Optional, Sequence

from nasfpn.config.flat import Config, load_config
from nasfpn.core.context import set_context, setup_logging


def main(argv: Optional[Sequence[str]] = None) -> str:
    return run(load_config(argv))


def run(cfg: Config) -> str:
    return export_model(cfg, setup_logging(cfg.log_level))


def export_model(cfg: Config, log: logging.Logger) -> str:
    """The export the config asks for (the module docstring); returns the path of the last file
    written (the INT8 twin with --quantize=int8). nasfpn.export() calls it too."""
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.detections_graph import append_detection_nodes
    from nasfpn.deploy.export import ExportError, export_network, export_path
    from nasfpn.core.interrupts import report_progress
    from nasfpn.core.storage import check_output_file, storage_errors
    from nasfpn.deploy.quantize import (
        calibration_batches,
        calibration_images,
        int8_model_path,
        quantize_onnx_int8,
    )

    if cfg.export_detections and cfg.file_format.upper() != "ONNX":
        raise ExportError(
            f"--export_detections=True writes an ONNX detections graph: give "
            f"--file_format=ONNX (got {cfg.file_format})"
        )
    if cfg.quantize == "int8" and cfg.file_format.upper() != "ONNX":
        raise ExportError(
            f"--quantize=int8 writes an ONNX Runtime model: give --file_format=ONNX (got {cfg.file_format})"
        )
    # The target is checked before the network is built (its size once it is, in export_network).
    check_output_file(export_path(cfg.file_name, cfg.file_format), option="file_name")
    if cfg.quantize == "int8":
        check_output_file(int8_model_path(export_path(cfg.file_name, cfg.file_format)))
    from nasfpn.model_files.description import (
        ModelDescription,
        config_for_model,
        model_classes,
        write_description,
    )

    cfg, description = config_for_model(cfg, cfg.checkpoint_path)
    names, to_category = model_classes(cfg.model, description)
    ids = [to_category.get(i) for i in range(1, cfg.num_classes)] if to_category else None
    exported = ModelDescription.of_sections(cfg.model, cfg.anchors, names, ids)
    calibration = []
    if cfg.quantize == "int8":  # read (and check) the calibration images before the long export
        calibration = calibration_images(cfg.calibration_data, cfg.img_shape, cfg.calibration_images)
    set_context(cfg.device)
    if not cfg.checkpoint_path:
        log.warning("no --checkpoint_path: exporting randomly initialised weights")
    net = build_inference_network(cfg, cfg.checkpoint_path, cfg.checkpoint_sha256)
    path = export_network(
        net,
        cfg.file_name,
        cfg.file_format,
        cfg.export_batch_size,
        tuple(cfg.img_shape),
        cfg.device_target,
        exported,
    )
    report_progress(lambda: f"{path} is complete; the steps after the export did not run")
    log.info(
        "exported %s (input [%d, 3, %d, %d] float32 -> boxes, scores)",
        path,
        cfg.export_batch_size,
        *cfg.img_shape,
    )
    if cfg.quantize == "int8":
        with storage_errors(int8_model_path(path), "quantizing into"):
            path = quantize_onnx_int8(
                path, int8_model_path(path), calibration_batches(calibration, cfg.export_batch_size)
            )
            write_description(path, exported)
        log.info(
            "quantized %s (INT8, calibrated on %d images of %s)", path, len(calibration), cfg.calibration_data
        )
    if cfg.export_detections:
        for written in {export_path(cfg.file_name, cfg.file_format), path}:
            append_detection_nodes(
                written,
                tuple(cfg.img_shape),
                cfg.min_score,
                cfg.nms_threshold,
                cfg.max_boxes,
                cfg.export_max_detections,
                exported,
            )
            log.info(
                "%s is a detections graph: min_score %g, NMS IoU > %g, at most %d per class "
                "and %d per image (detection_boxes x1y1x2y2 in input pixels, "
                "detection_scores, detection_classes, num_detections)",
                written,
                cfg.min_score,
                cfg.nms_threshold,
                cfg.max_boxes,
                cfg.export_max_detections,
            )
    return str(path)
