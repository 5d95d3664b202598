"""The model an entry point runs: a checkpoint, an exported file or the published checkpoint.

eval.py and infer.py take exactly one of --checkpoint_path, --model_path, --hub; the 310 twin takes
only --model_path (the Ascend app runs exported files). MindSpore's device is set up only when
MindSpore runs the model (a checkpoint or a .mindir), so an .onnx file runs on any machine.
--runtime / --precision choose how an exported file runs (ONNX Runtime or OpenVINO, f32 or bf16)."""

from nasfpn.core.context import set_context
from nasfpn.inference.hub import expected_sha256, published_checkpoint
from nasfpn.inference.runtimes import (
    check_raw_runtime,
    check_runtime_classes,
    check_runtime_input,
    describe_model_run,
    model_batch_size,
    open_runtime,
)


def open_model(cfg, log=None, exported_only=False, batch_size=None, num_classes=None, raw_outputs_for=None):
    """(runtime, path of the model file) for the inference section's model (checked by
    InferenceConfig.check_model_choice), its input checked against the model section's img_shape
    and `batch_size` (None: the batch the model takes; the 310 twin feeds 1) and, when given, its
    scores' columns against `num_classes` (for the runtimes that know them before running: ONNX;
    the others are checked on their first outputs). `raw_outputs_for` (what needs them, e.g.
    "the 310 twin") refuses a detections graph."""
    inference = cfg.inference
    inference.check_model_choice(exported_only)
    if inference.model_path:
        path = inference.model_path
        if path.lower().endswith(".mindir"):
            set_context(cfg.device)
        runtime = open_runtime(path, inference.num_threads, inference.runtime, inference.precision)
        if log:
            log.info("running %s", describe_model_run(path, runtime))
    else:
        path = published_checkpoint(inference) if inference.hub else inference.checkpoint_path
        if log:
            log.info("loading %s", path)
        set_context(cfg.device)
        from nasfpn.inference.build import (
            build_inference_network,
        )  # imports MindSpore (~3 s): not for an .onnx

        runtime = open_runtime(build_inference_network(cfg, path, expected_sha256(inference, path)))
    if raw_outputs_for:
        check_raw_runtime(runtime, path, raw_outputs_for)
    check_runtime_input(runtime, cfg.model.img_shape, batch_size or model_batch_size(runtime))
    if num_classes is not None:
        check_runtime_classes(runtime, num_classes)
    return runtime, path
