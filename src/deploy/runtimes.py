"""One calling convention for every way to run the inference network.

`open_runtime(x)` takes a Cell, a .mindir file or an .onnx file and returns a callable
images (np.float32 [N, 3, H, W]) -> (boxes [N, A, 4], scores [N, A, C]) as numpy arrays.
"""
import os

import numpy as np


class CellRuntime:
    """A MindSpore Cell (graph or PyNative mode, whichever the context is in)."""

    name = "mindspore-cell"

    def __init__(self, cell):
        import mindspore as ms
        self._ms = ms
        self.cell = cell
        self.cell.set_train(False)

    def __call__(self, images):
        boxes, scores = self.cell(self._ms.Tensor(np.ascontiguousarray(images, np.float32)))
        return boxes.asnumpy(), scores.asnumpy()


class MindirRuntime(CellRuntime):
    """A MINDIR file through mindspore.load + nn.GraphCell."""

    name = "mindir"

    def __init__(self, path):
        import mindspore as ms
        import mindspore.nn as nn
        super().__init__(nn.GraphCell(ms.load(path)))
        self.path = path


class OnnxRuntime:
    """An ONNX file through onnxruntime (CPU execution provider)."""

    name = "onnxruntime"

    def __init__(self, path, num_threads=0):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, images):
        boxes, scores = self.session.run(None, {self.input_name: np.ascontiguousarray(images,
                                                                                      np.float32)})
        return boxes, scores


def open_runtime(model):
    """A runtime for a Cell, a '.mindir' or an '.onnx' path."""
    if not isinstance(model, (str, os.PathLike)):
        return CellRuntime(model)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".mindir":
        return MindirRuntime(path)
    if suffix == ".onnx":
        return OnnxRuntime(path)
    raise ValueError(f"{path}: expected a .mindir or .onnx file (for a .ckpt build the network and "
                     "pass the Cell)")
