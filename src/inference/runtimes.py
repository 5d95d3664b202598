"""One calling convention for every way to run the inference network.

`open_runtime(x)` takes a Cell, a .mindir file or an .onnx file and returns a callable
images (np.float32 [N, 3, H, W]) -> (boxes [N, A, 4], scores [N, A, C]) as numpy arrays. An .onnx
detections graph (export.py --export_detections=True) returns its four outputs instead (boxes
[N, D, 4], scores [N, D], classes [N, D], counts [N]: src/inference/detections.py
DETECTION_OUTPUTS); such a runtime has `detections` True.

An exported model has a fixed input shape. The file runtimes read it from the file and refuse
images of another shape with a message naming the model and the --img_shape to use (instead of
ONNX Runtime's or MindSpore's C++ error from deep inside the graph). A file that is not a model
is a ModelFileError naming it.
"""
import os

import numpy as np

from ..errors import UserError, UserFileNotFoundError
from .detections import is_detections_signature


class ModelFileError(UserError):
    """A model file that cannot be loaded, or that does not take the images it is given."""


def _short(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def check_input_shape(path, expected, images_shape):
    """ModelFileError unless `images_shape` fits the model's input shape `expected` (None or a
    non-positive entry: any size on that axis)."""
    if expected is None or len(expected) != len(images_shape):
        return
    fixed = [(i, e) for i, e in enumerate(expected) if isinstance(e, int) and e > 0]
    if all(images_shape[i] == e for i, e in fixed):
        return
    hint = []
    if len(expected) == 4 and all(isinstance(e, int) and e > 0 for e in expected[2:]):
        hint.append(f"run with --img_shape=[{expected[2]},{expected[3]}]")
    if len(expected) == 4 and isinstance(expected[0], int) and expected[0] > 0 \
            and expected[0] != images_shape[0]:
        hint.append(f"feed batches of {expected[0]} (exported with --export_batch_size={expected[0]})")
    raise ModelFileError(f"{path} takes input {list(expected)} but was given {list(images_shape)}"
                         + (f": {' and '.join(hint)}, the size it was exported with" if hint else ""))


class CellRuntime:
    """A MindSpore Cell (graph or PyNative mode, whichever the context is in)."""

    name = "mindspore-cell"
    detections = False  # outputs raw boxes and scores
    input_shape = None  # a Cell takes any image size the config allows
    score_columns = None  # known once it has run (check_score_columns on its outputs)

    def __init__(self, cell):
        import mindspore as ms
        self._ms = ms
        self.cell = cell
        self.cell.set_train(False)

    def __call__(self, images):
        boxes, scores = self.cell(self._ms.Tensor(np.ascontiguousarray(images, np.float32)))
        return boxes.asnumpy(), scores.asnumpy()


def mindir_input_shape(path):
    """The first graph input's dims of a MINDIR file (read from its protobuf), or ModelFileError."""
    from google.protobuf.message import DecodeError
    from mindspore.train import mind_ir_pb2
    model = mind_ir_pb2.ModelProto()
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except DecodeError as exc:
        raise ModelFileError(f"{path}: not a MINDIR model ({_short(exc)}); export it again "
                             "with export.py --file_format=MINDIR") from None
    inputs = [tensor for graph_input in model.graph.input for tensor in graph_input.tensor]
    if not inputs:
        raise ModelFileError(f"{path}: a MINDIR file without a graph input; export it again "
                             "with export.py --file_format=MINDIR")
    return [int(d) for d in inputs[0].dims]


class MindirRuntime(CellRuntime):
    """A MINDIR file through mindspore.load + nn.GraphCell."""

    name = "mindir"

    def __init__(self, path):
        import mindspore as ms
        import mindspore.nn as nn
        self.input_shape = mindir_input_shape(path)
        try:
            graph = ms.load(path)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: MindSpore cannot load this MINDIR ({_short(exc)})") from None
        super().__init__(nn.GraphCell(graph))
        self.path = path

    def __call__(self, images):
        check_input_shape(self.path, self.input_shape, np.shape(images))
        return super().__call__(images)


class OnnxRuntime:
    """An ONNX file through onnxruntime (CPU execution provider)."""

    name = "onnxruntime"

    def __init__(self, path, num_threads=0):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            if exc.__class__.__module__.startswith("onnxruntime"):
                raise ModelFileError(f"{path}: ONNX Runtime cannot load this model "
                                     f"({_short(exc)})") from None
            raise
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        # Symbolic axes (strings) accept any size.
        self.input_shape = [d if isinstance(d, int) else -1 for d in model_input.shape]
        outputs = self.session.get_outputs()
        self.detections = is_detections_signature([o.name for o in outputs])
        last_axis = outputs[1].shape[-1] if len(outputs) > 1 and outputs[1].shape else None
        self.score_columns = last_axis if isinstance(last_axis, int) and last_axis > 0 \
            and not self.detections else None
        self.path = path

    def __call__(self, images):
        check_input_shape(self.path, self.input_shape, np.shape(images))
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(images, np.float32)})
        return tuple(outputs) if self.detections else (outputs[0], outputs[1])


def open_runtime(model, num_threads=0):
    """A runtime for a Cell, a '.mindir' or an '.onnx' path (`num_threads`: ONNX Runtime's
    intra-op threads, 0 for its default of one per physical core)."""
    if not isinstance(model, (str, os.PathLike)):
        return CellRuntime(model)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"model file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".mindir":
        return MindirRuntime(path)
    if suffix == ".onnx":
        return OnnxRuntime(path, num_threads)
    raise ModelFileError(f"{path}: expected a .mindir or .onnx file (for a .ckpt build the network "
                         "and pass the Cell)")


def returns_detections(runtime):
    """True for a detections graph (its outputs are final detections, not boxes and scores)."""
    return bool(getattr(runtime, "detections", False))


def check_raw_runtime(runtime, path, needed_by):
    """ModelFileError naming `path` when it is a detections graph: `needed_by` post-processes the
    raw boxes and scores itself."""
    if returns_detections(runtime):
        raise ModelFileError(f"{path} is a detections graph (exported with --export_detections="
                             f"True: its outputs are final detections); {needed_by} needs the raw "
                             "outputs (boxes, scores): export again without --export_detections")


def check_runtime_input(runtime, img_shape, batch_size=1):
    """Before any image is processed: ModelFileError unless the runtime takes [batch, 3, H, W]
    images of `img_shape` (a Cell takes any)."""
    if runtime.input_shape is not None:
        check_input_shape(runtime.path, runtime.input_shape, (batch_size, 3, *img_shape))


def check_score_columns(model, columns, num_classes):
    """ModelFileError unless the model's scores have `num_classes` columns (background included):
    a model of another dataset would otherwise be evaluated into an mAP of about 0."""
    if columns is not None and columns != num_classes:
        raise ModelFileError(f"{model} scores {columns} classes (background included) but "
                             f"--num_classes is {num_classes}: give the --num_classes (and the "
                             "dataset / --anno_path) the model was trained with")


def check_runtime_classes(runtime, num_classes):
    """Before any image: the class-count check for the runtimes that know their output shape
    (ONNX); the others are checked on their first outputs."""
    check_score_columns(getattr(runtime, "path", "the network"), runtime.score_columns, num_classes)


def model_batch_size(runtime):
    """The batch an exported model takes (its fixed first input dimension), else 1 (a Cell, or a
    model with a free batch axis, is fed one image at a time)."""
    shape = runtime.input_shape
    return shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else 1


def run_padded(runtime, images, batch_size):
    """`runtime` on `images` [n, 3, H, W] with n <= batch_size: a short batch (the last one) is
    padded with zero images to the model's batch and the padding's outputs are dropped. Returns
    the runtime's outputs (boxes, scores; a detections graph's four)."""
    count = len(images)
    if count < batch_size:
        padding = np.zeros((batch_size - count, *np.shape(images)[1:]), np.float32)
        images = np.concatenate([np.asarray(images, np.float32), padding])
    return tuple(output[:count] for output in runtime(images))
