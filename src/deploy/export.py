"""Export the inference network (with its box decoder) to MINDIR, AIR or ONNX."""
import os
import shutil
import tempfile

import mindspore as ms
import numpy as np
from ..atomic import atomic_path
from ..errors import UserError
from ..model_description import write_description

FORMAT_SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# MindSpore writes ONNX at opset 11, where DequantizeLinear has no `axis`: opset 13 is the first
# that allows per-channel (per output channel) INT8 weights, so ONNX exports are converted to it.
ONNX_OPSET = 13


class ExportError(UserError):
    """An export that cannot be done as asked (format, device)."""


def export_network(net, file_name, file_format="MINDIR", batch_size=1, img_shape=(640, 640),
                   device_target="CPU", description=None):
    """Export `net` (images [N,3,H,W] -> boxes, scores) and return the written file's path.

    `description` (src/model_description.py) is stored in the file: ONNX metadata_props, MINDIR
    user_info; AIR has no place for it, so it goes beside as <file>.air.json.

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
        if file_format == "ONNX":
            upgrade_onnx_opset(written, ONNX_OPSET)
        if description is not None and file_format != "AIR":
            write_description(written, description)
        os.replace(written, final_path)
        if description is not None and file_format == "AIR":
            write_description(final_path, description)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_path


def upgrade_onnx_opset(path, opset):
    """Rewrite the ONNX file at `path` at `opset` (onnx's version converter; the graph's ops keep
    their meaning, so the outputs are unchanged) and check the result."""
    import onnx
    from onnx import version_converter
    model = onnx.load(path)
    current = max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if current >= opset:
        return path
    converted = version_converter.convert_version(model, opset)
    onnx.checker.check_model(converted)
    # MindSpore leaves its file read-only: write beside it and rename over it.
    with atomic_path(path) as tmp:
        onnx.save(converted, tmp)
    return path
