"""Export the inference network (with its box decoder) to MINDIR, AIR or ONNX."""

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile

import mindspore as ms
import numpy as np
from nasfpn.core.atomic import atomic_path
from nasfpn.core.errors import UserError
from nasfpn.core.interrupts import deferred_signals
from nasfpn.model_files.description import write_description
from nasfpn.core.storage import (
    check_free_space,
    check_output_file,
    raise_if_disk_full,
    remove_stale_temporaries,
    storage_errors,
    temporary_name,
)

FORMAT_SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# MindSpore writes ONNX at opset 11, where DequantizeLinear has no `axis`: opset 13 is the first
# that allows per-channel (per output channel) INT8 weights, so ONNX exports are converted to it.
ONNX_OPSET = 13


class ExportError(UserError):
    """An export that cannot be done as asked (format, device)."""


# ms.export refuses a file name with any other character (non-ASCII letters, spaces, '~', '+'):
# such targets are exported under a name it accepts and renamed (export_folder).
MINDSPORE_NAME = re.compile(r"^[0-9a-zA-Z@_\-.:/\\]+$")


def mindspore_accepts(path: str) -> bool:
    return MINDSPORE_NAME.match(path) is not None


def export_folder_stem(final_path: str) -> str:
    """What the temporary folder beside `final_path` is named after (`.tmp<pid>-<this>`): the file
    name, or a hash of it where MindSpore would refuse the name."""
    name = os.path.basename(final_path)
    return name if mindspore_accepts(name) else "export-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:12]


def export_path(file_name, file_format):
    """The file export_network writes for --file_name / --file_format (the suffix added once)."""
    file_format = file_format.upper()
    if file_format not in FORMAT_SUFFIX:
        raise ExportError(f"--file_format: expected one of {list(FORMAT_SUFFIX)}, got {file_format!r}")
    target = os.path.abspath(file_name)
    if target.endswith(FORMAT_SUFFIX[file_format]):
        target = target[: -len(FORMAT_SUFFIX[file_format])]
    return target + FORMAT_SUFFIX[file_format]


# Besides the float32 weights, a model file holds its graph: generous room for that.
GRAPH_BYTES = 4 * 1024 * 1024


def expected_model_bytes(net):
    """About the size of the exported file: float32 weights plus the graph."""
    return sum(4 * int(np.prod(p.shape)) for p in net.get_parameters()) + GRAPH_BYTES


def export_network(
    net,
    file_name,
    file_format="MINDIR",
    batch_size=1,
    img_shape=(640, 640),
    device_target="CPU",
    description=None,
):
    """Export `net` (images [N,3,H,W] -> boxes, scores) and return the written file's path.

    `description` (nasfpn/model_files/description.py) is stored in the file: ONNX metadata_props, MINDIR
    user_info; AIR has no place for it, so it goes beside as <file>.air.json.

    The file is written into a temporary folder `.tmp<pid>-<file>` next to the target and renamed
    at the end, so an interrupted export never leaves a truncated model under the final name; the
    folder of an export that was killed outright is removed by the next export of that file. The
    target is checked first (a writable folder with room for the model, not a folder itself), and
    a disk that fills up meanwhile is a StorageError, not MindSpore's RuntimeError.
    """
    final_path = export_path(file_name, file_format)
    file_format = file_format.upper()
    if file_format == "AIR" and device_target != "Ascend":
        raise ExportError(
            "--file_format=AIR needs an Ascend device (--device_target=Ascend); on "
            f"{device_target} export MINDIR (runs everywhere, incl. Ascend 310) or ONNX"
        )
    if batch_size < 1:
        raise ExportError(f"--export_batch_size: expected >= 1, got {batch_size}")
    check_output_file(final_path, expected_model_bytes(net), option="file_name", create_dir=True)
    own = (export_folder_stem(final_path), os.path.basename(final_path))  # the folder, the renamed file
    remove_stale_temporaries(os.path.dirname(final_path), own, exact=True)
    net.set_train(False)
    return write_model(
        net,
        ms.Tensor(np.zeros((batch_size, 3, *img_shape), np.float32)),
        final_path,
        file_format,
        description,
        expected_model_bytes(net),
    )


def write_model(net, dummy, final_path, file_format, description=None, need_bytes=0):
    """ms.export into `.tmp<pid>-<file>` beside `final_path` (export_folder), renamed to it when
    complete. A failed write (full disk, read-only) is a StorageError and leaves neither file
    behind."""
    with storage_errors(final_path, "exporting"), export_folder(final_path, need_bytes) as tmp_dir:
        written = _export_into(net, dummy, tmp_dir, file_format, final_path)
        if description is not None and file_format != "AIR":
            write_description(written, description)
        move_into_place(written, final_path)
        if description is not None and file_format == "AIR":
            write_description(final_path, description)
    return final_path


def move_into_place(written: str, final_path: str) -> None:
    """Rename `written` to `final_path`; from another file system (the system's temporary folder)
    copy it beside the target under a temporary name first, so the rename stays atomic."""
    try:
        os.replace(written, final_path)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic_path(final_path) as tmp:
            shutil.copyfile(written, tmp)


@contextlib.contextmanager
def export_folder(final_path: str, need_bytes: int = 0):
    """A fresh folder for ms.export, removed afterwards: beside `final_path` when MindSpore accepts
    that path, else in the system's temporary folder (a target under a non-ASCII folder or one with
    spaces: the file is then moved over); ExportError in one line when neither is accepted."""
    beside = os.path.join(os.path.dirname(final_path), temporary_name(export_folder_stem(final_path)))
    if mindspore_accepts(beside):
        os.mkdir(beside)
        folder = beside
    else:
        system = tempfile.gettempdir()
        if not mindspore_accepts(os.path.join(system, "x")):
            raise ExportError(
                f"--file_name={final_path}: MindSpore exports only to paths of ASCII letters, digits "
                f"and @_-.:/ and the temporary folder {system} has others too; set TMPDIR to such a folder"
            )
        check_free_space(system, need_bytes, f"temporary folder {system}", "export")
        folder = tempfile.mkdtemp(prefix="nasfpn-export-", dir=system)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _export_into(net, dummy, tmp_dir, file_format, final_path):
    stem = os.path.join(tmp_dir, "model")
    try:
        # MindSpore's export swallows an exception raised by a signal handler while it runs: the
        # signal is held until it returns, then stops the run (write_model removes the file)
        with deferred_signals():
            ms.export(net, dummy, file_name=stem, file_format=file_format)
    except RuntimeError as exc:  # MindSpore's error for a failed write says nothing of the cause
        raise_if_disk_full(final_path, exc, "exporting")
        raise
    written = stem + FORMAT_SUFFIX[file_format]
    if not os.path.isfile(written):
        raise_if_disk_full(final_path, ExportError("no file written"), "exporting")
        raise ExportError(f"MindSpore wrote no {file_format} file for {final_path}")
    if file_format == "ONNX":
        upgrade_onnx_opset(written, ONNX_OPSET)
    return written


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
