"""Export the inference network (boxes + scores) to MINDIR, AIR (Ascend) or ONNX.

    python export.py --checkpoint_path=CKPT --file_name=retinanet_nasfpn --file_format=MINDIR \
        --device_target=CPU [--export_batch_size=1] [--img_shape=[640,640]]
    python export.py --checkpoint_path=CKPT --file_format=ONNX --quantize=int8 \
        --calibration_data=MINDRECORD_OR_IMAGE_FOLDER [--calibration_images=100]

With --quantize=int8 the float32 ONNX model is written as usual and its static INT8 twin beside it
as <file_name>_int8.onnx (src/deploy/quantize.py says how it is quantized).
"""

from src.config import load_config
from src.context import set_context, setup_logging
from src.modelarts import modelarts_entry
from src.cli import run_entry_point


def main(argv=None):
    return run(load_config(argv))


def run(cfg):
    log = setup_logging(cfg.log_level)
    from src.inference.build import build_inference_network
    from src.deploy.export import ExportError, export_network
    from src.deploy.quantize import calibration_batches, calibration_images, int8_model_path, \
        quantize_onnx_int8
    if cfg.quantize == "int8" and cfg.file_format.upper() != "ONNX":
        raise ExportError(f"--quantize=int8 writes an ONNX Runtime model: give --file_format=ONNX "
                          f"(got {cfg.file_format})")
    calibration = []
    if cfg.quantize == "int8":  # read (and check) the calibration images before the long export
        calibration = calibration_images(cfg.calibration_data, cfg, cfg.calibration_images)
    set_context(cfg)
    if not cfg.checkpoint_path:
        log.warning("no --checkpoint_path: exporting randomly initialised weights")
    net = build_inference_network(cfg, cfg.checkpoint_path, cfg.checkpoint_sha256)
    path = export_network(net, cfg.file_name, cfg.file_format, cfg.export_batch_size,
                          tuple(cfg.img_shape), cfg.device_target)
    log.info("exported %s (input [%d, 3, %d, %d] float32 -> boxes, scores)", path,
             cfg.export_batch_size, *cfg.img_shape)
    if cfg.quantize == "int8":
        path = quantize_onnx_int8(path, int8_model_path(path),
                                  calibration_batches(calibration, cfg.export_batch_size))
        log.info("quantized %s (INT8, calibrated on %d images of %s)", path, len(calibration),
                 cfg.calibration_data)
    return path


if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
