"""Static INT8 quantization of an exported ONNX model with ONNX Runtime (export.py --quantize=int8).

Scheme (chosen by measurement, bench/RESULTS.md "INT8 schemes"): QDQ format, int8 weights with one
scale per output channel (symmetric), uint8 activations with one scale and zero point per tensor
from the min/max seen on the calibration images. uint8 x int8 is what x86 VNNI multiplies
natively: ONNX Runtime 1.32 turns 153 of the release network's 157 convolutions into integer
QLinearConv with uint8 activations (0.51x the float32 time), but only 86 with int8 ones (the rest
run as float Conv between Dequantize/Quantize: 1.05x float32). Only Conv is quantized: it is
>99% of the FLOPs; the box decoder (Exp, Mul, Add, Clip), the sigmoid and the reshapes stay
float32, so boxes and scores keep the float32 model's layout and range. BatchNorm is folded into
the convolutions first (ONNX Runtime's pre-processing), so each folded weight gets its own scales.

Calibration images come from an eval MindRecord (the eval pipeline's preprocessing) or a folder
of images (infer.py's preprocessing); both equal what the model sees at inference.
"""

import os
import shutil
import tempfile

import numpy as np

from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.core.files import IMAGE_SUFFIXES, image_files_in

INT8_SUFFIX = "_int8"


class CalibrationError(UserError):
    """Calibration data that cannot be used (missing, empty, unreadable)."""


def int8_model_path(fp32_path):
    """'out/model.onnx' -> 'out/model_int8.onnx'."""
    stem, suffix = os.path.splitext(fp32_path)
    return stem + INT8_SUFFIX + suffix


def calibration_images(source, img_shape, count):
    """Up to `count` images preprocessed to `img_shape` (float32 [3, H, W]) from `source`: an
    eval MindRecord file or a folder of images; CalibrationError when it holds none."""
    if not source:
        raise CalibrationError(
            "--quantize=int8 needs --calibration_data: an eval MindRecord file or a folder of images"
        )
    if count < 1:
        raise CalibrationError(f"--calibration_images: expected >= 1, got {count}")
    if os.path.isdir(source):
        paths = image_files_in(source)
        if not paths:
            raise CalibrationError(
                f"--calibration_data={source}: a folder with no "
                f"{'/'.join(IMAGE_SUFFIXES)} images; give a folder of images or "
                "an eval MindRecord file"
            )
        return _images_from_files(paths[:count], img_shape)
    if not os.path.isfile(source):
        raise UserFileNotFoundError(f"--calibration_data={source}: no such file or folder")
    return _images_from_mindrecord(source, img_shape, count)


def _images_from_files(paths, img_shape):
    from nasfpn.data.image_files import read_image_file
    from nasfpn.data.transforms import ImageDecodeError, preprocess_image

    images = []
    for path in paths:
        try:
            _, image = read_image_file(path)
        except ImageDecodeError as exc:
            raise CalibrationError(f"--calibration_data: {exc}") from None
        images.append(preprocess_image(image, img_shape))
    return images


def _images_from_mindrecord(path, img_shape, count):
    from nasfpn.data.pipeline import create_eval_dataset

    try:
        dataset = create_eval_dataset(path, img_shape, 1, batch_size=1)
        images = []
        for row in dataset.create_dict_iterator(output_numpy=True, num_epochs=1):
            images.append(row["image"][0])
            if len(images) == count:
                break
    except RuntimeError as exc:  # MindSpore's message names the file / missing part
        raise CalibrationError(
            f"--calibration_data={path}: not a readable eval MindRecord ({str(exc).strip().splitlines()[0]})"
        ) from None
    if not images:
        raise CalibrationError(f"--calibration_data={path}: the MindRecord holds no images")
    return images


def calibration_batches(images, batch_size):
    """Stack images into [batch_size, 3, H, W] batches; the last batch is filled up with the first
    images again (a repeated image leaves min/max unchanged)."""
    total = -(-len(images) // batch_size) * batch_size
    order = [i % len(images) for i in range(total)]
    return [
        np.stack([images[i] for i in order[start : start + batch_size]]).astype(np.float32)
        for start in range(0, len(order), batch_size)
    ]


class _BatchReader:
    """onnxruntime.quantization's CalibrationDataReader over prepared batches."""

    def __init__(self, input_name, batches):
        self._feeds = iter([{input_name: batch} for batch in batches])

    def get_next(self):
        return next(self._feeds, None)

    def __len__(self):  # ORT checks for it on some paths
        return 0

    def rewind(self):
        pass


def quantize_onnx_int8(
    fp32_path, out_path, batches, per_channel=True, activations="uint8", op_types=("Conv",)
):
    """Write the static INT8 model of the ONNX model `fp32_path` to `out_path` (atomically),
    calibrated on `batches` (float32 arrays of the model's input shape). Returns out_path.
    The defaults are the scheme export.py uses; the others are there for
    bench/bench_int8_schemes.py (per-tensor weights, int8 activations, more op types)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from nasfpn.deploy.detections_graph import check_raw_model_file

    # Quantization calibrates the raw outputs; a detections graph gets its INT8 twin by
    # quantizing the raw export and appending the post-processing (export.py does that).
    check_raw_model_file(fp32_path, "INT8 quantization")
    reader_class = type("CalibrationReader", (_BatchReader, CalibrationDataReader), {})
    input_name = onnx.load(fp32_path, load_external_data=False).graph.input[0].name
    out_dir = os.path.dirname(os.path.abspath(out_path))
    tmp_dir = tempfile.mkdtemp(prefix=".quantize-", dir=out_dir)
    try:
        prepared = os.path.join(tmp_dir, "prepared.onnx")
        # Shape inference + ONNX Runtime's basic graph optimisation (folds BatchNorm into Conv).
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        written = os.path.join(tmp_dir, "int8.onnx")
        quantize_static(
            prepared,
            written,
            reader_class(input_name, batches),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            activation_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[activations],
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # The calibrator keeps only each tensor's min and max per batch (it adds
            # ReduceMin/ReduceMax outputs), so memory stays small without flushing
            # (ONNX Runtime 1.32's CalibMaxIntermediateOutputs drops the ranges).
            # One DequantizeLinear per consumer: ONNX Runtime fuses DQ -> Conv -> Q
            # into an integer QLinearConv only when the DQ feeds that Conv alone.
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "DedicatedQDQPair": True},
        )
        os.replace(written, out_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_path
