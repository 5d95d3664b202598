"""Export the inference network (with its box decoder) to MINDIR, AIR or ONNX."""
import os
import shutil
import tempfile

import mindspore as ms
import numpy as np
from ..errors import UserError

FORMAT_SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


class ExportError(UserError):
    """An export that cannot be done as asked (format, device)."""


def export_network(net, file_name, file_format="MINDIR", batch_size=1, img_shape=(640, 640),
                   device_target="CPU"):
    """Export `net` (images [N,3,H,W] -> boxes, scores) and return the written file's path.

    The file is written into a temporary directory next to the target and renamed at the end, so an
    interrupted export never leaves a truncated model under the final name.
    """
    file_format = file_format.upper()
    if file_format not in FORMAT_SUFFIX:
        raise ExportError(f"--file_format: expected one of {list(FORMAT_SUFFIX)}, got {file_format!r}")
    if file_format == "AIR" and device_target != "Ascend":
        raise ExportError("--file_format=AIR needs an Ascend device (--device_target=Ascend); on "
                          f"{device_target} export MINDIR (runs everywhere, incl. Ascend 310) or ONNX")
    if batch_size < 1:
        raise ExportError(f"--export_batch_size: expected >= 1, got {batch_size}")
    target = os.path.abspath(file_name)
    if target.endswith(FORMAT_SUFFIX[file_format]):
        target = target[:-len(FORMAT_SUFFIX[file_format])]
    final_path = target + FORMAT_SUFFIX[file_format]
    out_dir = os.path.dirname(final_path)
    os.makedirs(out_dir, exist_ok=True)
    net.set_train(False)
    dummy = ms.Tensor(np.zeros((batch_size, 3, *img_shape), np.float32))
    tmp_dir = tempfile.mkdtemp(prefix=".export-", dir=out_dir)
    try:
        stem = os.path.join(tmp_dir, "model")
        ms.export(net, dummy, file_name=stem, file_format=file_format)
        written = stem + FORMAT_SUFFIX[file_format]
        if not os.path.isfile(written):
            raise ExportError(f"MindSpore wrote no {file_format} file for {final_path}")
        os.replace(written, final_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_path
