"""One calling convention for every way to run the inference network.

`open_runtime(x)` takes a Cell, a .mindir file, an .onnx file or an OpenVINO IR (.xml + .bin) and
returns a callable images (np.float32 [N, 3, H, W]) -> (boxes [N, A, 4], scores [N, A, C]) as numpy
arrays. An .onnx runs in ONNX Runtime or, with runtime="openvino", in OpenVINO (an optional
dependency: requirements-openvino.txt), whose precision is always set explicitly. A detections
graph (export.py --export_detections=True) returns its four outputs instead (boxes [N, D, 4],
scores [N, D], classes [N, D], counts [N]: nasfpn/inference/detections.py DETECTION_OUTPUTS); such a
runtime has `detections` True.

An exported model has a fixed input shape. The file runtimes read it from the file and refuse
images of another shape with a message naming the model and the --img_shape to use (instead of
ONNX Runtime's or MindSpore's C++ error from deep inside the graph). A file that is not a model
is a ModelFileError naming it.
"""

import os

import numpy as np

from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.inference.detections import is_detections_signature


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
    if (
        len(expected) == 4
        and isinstance(expected[0], int)
        and expected[0] > 0
        and expected[0] != images_shape[0]
    ):
        hint.append(f"feed batches of {expected[0]} (exported with --export_batch_size={expected[0]})")
    raise ModelFileError(
        f"{path} takes input {list(expected)} but was given {list(images_shape)}"
        + (f": {' and '.join(hint)}, the size it was exported with" if hint else "")
    )


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
    except (DecodeError, UnicodeDecodeError) as exc:  # the pure-Python parser's error on a string field
        raise ModelFileError(
            f"{path}: not a MINDIR model ({_short(exc)}); export it again with export.py "
            "--file_format=MINDIR (an ONNX model must end in .onnx)"
        ) from None
    inputs = [tensor for graph_input in model.graph.input for tensor in graph_input.tensor]
    if not inputs:
        raise ModelFileError(
            f"{path}: a MINDIR file without a graph input; export it again "
            "with export.py --file_format=MINDIR"
        )
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


def check_model_signature(path, input_shapes, output_shapes, output_names):
    """ModelFileError unless the model takes one [N, 3, H, W] input and returns this project's
    outputs: boxes [N, A, 4] and scores [N, A, C], or a detections graph's four (shapes as lists,
    -1 for a free axis). Another network's file would otherwise fail deep inside post-processing.
    Returns True for a detections graph."""

    def fixed(dim, value):
        return dim < 0 or dim == value

    detections = is_detections_signature(output_names)
    raw = (
        len(output_shapes) == 2
        and all(len(shape) == 3 for shape in output_shapes)
        and fixed(output_shapes[0][2], 4)
    )
    one_image_input = len(input_shapes) == 1 and len(input_shapes[0]) == 4 and fixed(input_shapes[0][1], 3)
    if not (one_image_input and (raw or detections)):
        raise ModelFileError(
            f"{path}: not a model of this project: expected one input [N, 3, H, W] and two outputs, "
            f"boxes [N, A, 4] and scores [N, A, num_classes] (or a detections graph's four), got "
            f"inputs {input_shapes} and outputs {output_shapes}; export the network with export.py"
        )
    return detections


def _known_columns(output_shapes):
    last_axis = output_shapes[1][-1] if len(output_shapes) > 1 and output_shapes[1] else None
    return last_axis if isinstance(last_axis, int) and last_axis > 0 else None


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
        except UnicodeDecodeError as exc:  # ONNX Runtime decoding its own error about damaged bytes
            raise ModelFileError(
                f"{path}: ONNX Runtime cannot load this model (damaged bytes: {_short(exc)}); export it again"
            ) from None
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            if exc.__class__.__module__.startswith("onnxruntime") and "bad_alloc" in str(exc):
                raise MemoryError(f"ONNX Runtime could not allocate memory loading {path}") from None
            if exc.__class__.__module__.startswith("onnxruntime"):
                raise ModelFileError(f"{path}: ONNX Runtime cannot load this model ({_short(exc)})") from None
            raise
        # Symbolic axes (strings) accept any size.
        inputs = [[d if isinstance(d, int) else -1 for d in i.shape] for i in self.session.get_inputs()]
        outputs = [[d if isinstance(d, int) else -1 for d in o.shape] for o in self.session.get_outputs()]
        self.detections = check_model_signature(
            path, inputs, outputs, [o.name for o in self.session.get_outputs()]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = inputs[0]
        self.score_columns = None if self.detections else _known_columns(outputs)
        self.path = path

    def __call__(self, images):
        check_input_shape(self.path, self.input_shape, np.shape(images))
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(images, np.float32)})
        return tuple(outputs)


class MissingPackageError(UserError):
    """An optional dependency the run asks for is not installed."""


OPENVINO_REQUIREMENTS = "requirements-openvino.txt"
# --precision -> OpenVINO's INFERENCE_PRECISION_HINT and the OPTIMIZATION_CAPABILITIES entry the CPU
# must list for it. Stated explicitly: on CPUs with AVX-512 BF16 / AMX OpenVINO's default is bf16.
OPENVINO_PRECISIONS = {"f32": ("f32", "FP32"), "bf16": ("bf16", "BF16")}


def import_openvino():
    """The openvino module, or MissingPackageError naming the package and its requirements file."""
    try:
        import openvino
    except ImportError:
        raise MissingPackageError(
            f"--runtime=openvino needs the openvino package, which is not "
            f"installed: pip install -r {OPENVINO_REQUIREMENTS}"
        ) from None
    return openvino


def check_precision_supported(path, precision, capabilities, device_name):
    """ModelFileError unless the CPU's OpenVINO capabilities list `precision` (f32 / bf16)."""
    if precision not in OPENVINO_PRECISIONS:
        raise ModelFileError(
            f"{path}: --precision: expected one of {list(OPENVINO_PRECISIONS)}, got {precision!r}"
        )
    needed = OPENVINO_PRECISIONS[precision][1]
    if needed not in capabilities:
        raise ModelFileError(
            f"{path}: --precision={precision} needs a CPU with {needed} support; "
            f"this one ({device_name}) offers {', '.join(capabilities)}: run with "
            "--precision=f32"
        )


def ir_weights_path(path):
    """The .bin beside an OpenVINO IR .xml (same stem)."""
    return os.path.splitext(path)[0] + ".bin"


def _partial_shape(port):
    return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]


class OpenVinoRuntime:
    """An .onnx file or an OpenVINO IR (.xml + .bin) through OpenVINO on the CPU, at an explicit
    inference precision (f32, or bf16 where the CPU has it). A QDQ INT8 ONNX (quantize.py) runs its
    quantised convolutions in int8 at either precision."""

    def __init__(self, path, precision="f32", num_threads=0):
        ov = import_openvino()
        core = ov.Core()
        check_precision_supported(
            path,
            precision,
            core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
            core.get_property("CPU", "FULL_DEVICE_NAME"),
        )
        if path.lower().endswith(".xml") and not os.path.isfile(ir_weights_path(path)):
            raise ModelFileError(
                f"{path}: an OpenVINO IR needs its weights file {ir_weights_path(path)}, which does not exist"
            )
        try:
            model = core.read_model(path)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: OpenVINO cannot read this model ({_short(exc)})") from None
        inputs = [_partial_shape(port) for port in model.inputs]
        outputs = [_partial_shape(port) for port in model.outputs]
        self.detections = check_model_signature(
            path, inputs, outputs, [port.get_any_name() for port in model.outputs]
        )
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision][0]}
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = num_threads
        compiled = core.compile_model(model, "CPU", config)
        self.request = compiled.create_infer_request()
        self.outputs = compiled.outputs
        self.input_shape = inputs[0]
        self.score_columns = None if self.detections else _known_columns(outputs)
        self.precision = precision
        self.name = f"openvino-{precision}"
        self.path = path

    def __call__(self, images):
        check_input_shape(self.path, self.input_shape, np.shape(images))
        results = self.request.infer({0: np.ascontiguousarray(images, np.float32)})
        # The request's output buffers are reused by the next call: copy them out.
        return tuple(np.array(results[port]) for port in self.outputs)


RUNTIMES = ("auto", "onnxruntime", "openvino")
MODEL_SUFFIXES = (".mindir", ".onnx", ".xml")


def check_runtime_choice(path, suffix, runtime, precision):
    """ModelFileError for a runtime / precision the model file cannot run with."""
    if runtime not in RUNTIMES:
        raise ModelFileError(f"{path}: --runtime: expected one of {list(RUNTIMES)}, got {runtime!r}")
    if suffix == ".mindir" and runtime != "auto":
        raise ModelFileError(
            f"{path}: a MINDIR runs in MindSpore; --runtime={runtime} runs .onnx "
            "files (and OpenVINO .xml): leave --runtime=auto"
        )
    if suffix == ".xml" and runtime == "onnxruntime":
        raise ModelFileError(
            f"{path}: an OpenVINO IR runs in OpenVINO only: use --runtime=openvino "
            "(or auto), or give the .onnx file"
        )
    if precision != "f32" and not (runtime == "openvino" or suffix == ".xml"):
        raise ModelFileError(
            f"{path}: --precision={precision} is an OpenVINO precision: add "
            "--runtime=openvino (ONNX Runtime and MindSpore run float32 models in f32)"
        )


def open_runtime(model, num_threads=0, runtime="auto", precision="f32"):
    """A runtime for a Cell, a '.mindir', an '.onnx' or an OpenVINO '.xml' path. `runtime`: auto
    (by the file: MindSpore, ONNX Runtime, OpenVINO), onnxruntime or openvino (for an .onnx);
    `precision`: OpenVINO's inference precision, f32 or bf16; `num_threads`: ONNX Runtime's
    intra-op threads / OpenVINO's inference threads, 0 for their default of one per core."""
    if not isinstance(model, (str, os.PathLike)):
        return CellRuntime(model)
    path = os.fspath(model)
    if os.path.isdir(path):
        raise ModelFileError(
            f"--model_path={path}: is a folder, expected a model file (.mindir, .onnx, .xml)"
        )
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"model file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelFileError(
            f"{path}: expected a .mindir, .onnx or OpenVINO .xml file (for a .ckpt "
            "build the network and pass the Cell)"
        )
    check_runtime_choice(path, suffix, runtime, precision)
    if suffix == ".mindir":
        return MindirRuntime(path)
    if suffix == ".xml" or runtime == "openvino":
        return OpenVinoRuntime(path, precision, num_threads)
    return OnnxRuntime(path, num_threads)


def onnx_weight_types(path):
    """Counter of the element types of an ONNX file's weights (initializers), plus "quantised":
    the number of them that a DequantizeLinear node reads (a QDQ INT8 model's weights)."""
    import collections

    import onnx

    model = onnx.load(path, load_external_data=False)
    dequantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    counts = collections.Counter(
        onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in model.graph.initializer
    )
    counts["quantised"] = sum(1 for t in model.graph.initializer if t.name in dequantized and t.dims)
    return counts


def model_weights_text(path):
    """What a model file's weights are, in words ('INT8 weights (QDQ: 42 quantised tensors)',
    'float32 weights'); '' where the file does not say cheaply (MINDIR, OpenVINO IR)."""
    if not str(path).lower().endswith(".onnx"):
        return ""
    counts = onnx_weight_types(path)
    if counts["quantised"]:
        return f"INT8 weights (QDQ: {counts['quantised']} quantised tensors)"
    if counts["float16"] > counts["float32"]:
        return "float16 weights"
    return "float32 weights"


def runtime_text(runtime):
    """The runtime and the precision it computes in, apart from the file's weights."""
    precision = getattr(runtime, "precision", None)
    if precision is not None:  # OpenVINO: an explicit inference precision
        return (
            f"{runtime.name.split('-')[0]} at inference precision {precision} "
            "(quantised convolutions of a QDQ model run in int8 at either precision)"
        )
    return runtime.name


def describe_model_run(path, runtime):
    """'m_int8.onnx: INT8 weights (...); runtime openvino at inference precision f32 (...)'."""
    weights = model_weights_text(path)
    return f"{path}{': ' + weights if weights else ''}; runtime {runtime_text(runtime)}"


def returns_detections(runtime):
    """True for a detections graph (its outputs are final detections, not boxes and scores)."""
    return bool(getattr(runtime, "detections", False))


def check_raw_runtime(runtime, path, needed_by):
    """ModelFileError naming `path` when it is a detections graph: `needed_by` post-processes the
    raw boxes and scores itself."""
    if returns_detections(runtime):
        raise ModelFileError(
            f"{path} is a detections graph (exported with --export_detections="
            f"True: its outputs are final detections); {needed_by} needs the raw "
            "outputs (boxes, scores): export again without --export_detections"
        )


def check_runtime_input(runtime, img_shape, batch_size=1):
    """Before any image is processed: ModelFileError unless the runtime takes [batch, 3, H, W]
    images of `img_shape` (a Cell takes any)."""
    if runtime.input_shape is not None:
        check_input_shape(runtime.path, runtime.input_shape, (batch_size, 3, *img_shape))


def check_score_columns(model, columns, num_classes):
    """ModelFileError unless the model's scores have `num_classes` columns (background included):
    a model of another dataset would otherwise be evaluated into an mAP of about 0."""
    if columns is not None and columns != num_classes:
        raise ModelFileError(
            f"{model} scores {columns} classes (background included) but "
            f"--num_classes is {num_classes}: give the --num_classes (and the "
            "dataset / --anno_path) the model was trained with"
        )


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
