"""The model an entry point runs: a checkpoint, an exported file or the published checkpoint.

eval.py and infer.py take exactly one of --checkpoint_path, --model_path, --hub; the 310 twin takes
only --model_path (the Ascend app runs exported files). MindSpore's device is set up only when
MindSpore runs the model (a checkpoint or a .mindir), so an .onnx file runs on any machine.
--runtime / --precision choose how an exported file runs (ONNX Runtime or OpenVINO, f32 or bf16)."""

from nasfpn.config.flat import ConfigError
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

MODEL_OPTIONS = ("checkpoint_path", "model_path", "hub")


def check_model_choice(cfg, exported_only=False):
    """ConfigError unless the config names the model in a way the entry point accepts."""
    if exported_only:
        if not cfg.model_path:
            raise ConfigError("--model_path: expected an exported .mindir, .onnx or OpenVINO .xml file")
        return
    chosen = [option for option in MODEL_OPTIONS if getattr(cfg, option)]
    if len(chosen) != 1:
        raise ConfigError(
            "give exactly one of --checkpoint_path (a .ckpt), --model_path (an exported "
            ".mindir, .onnx or OpenVINO .xml) or --hub (the published checkpoint); got "
            f"{chosen or 'none'}"
        )
    check_runtime_for_checkpoint(cfg)


def check_runtime_for_checkpoint(cfg):
    """ConfigError when --runtime / --precision are set for a checkpoint, which runs in MindSpore."""
    if cfg.model_path:
        return
    for key, default in (("runtime", "auto"), ("precision", "f32")):
        if getattr(cfg, key) != default:
            raise ConfigError(
                f"--{key}={getattr(cfg, key)} applies to an exported model "
                "(--model_path=FILE.onnx); a checkpoint runs as the MindSpore cell"
            )


def described_config(cfg):
    """(cfg completed from and checked against the description the model file carries, the
    description or None: nasfpn/model_files/description.py). The published checkpoint carries none."""
    from nasfpn.model_files.description import config_for_model

    return config_for_model(cfg, cfg.model_path or cfg.checkpoint_path)


def open_model(cfg, log=None, exported_only=False, batch_size=None, num_classes=None, raw_outputs_for=None):
    """(runtime, path of the model file) for the config's model, its input checked against
    cfg.img_shape and `batch_size` (None: the batch the model takes; the 310 twin feeds 1) and,
    when given, its scores' columns against `num_classes` (for the runtimes that know them
    before running: ONNX; the others are checked on their first outputs). `raw_outputs_for`
    (what needs them, e.g. "the 310 twin") refuses a detections graph."""
    check_model_choice(cfg, exported_only)
    if cfg.model_path:
        path = cfg.model_path
        if path.lower().endswith(".mindir"):
            set_context(cfg)
        runtime = open_runtime(path, cfg.num_threads, cfg.runtime, cfg.precision)
        if log:
            log.info("running %s", describe_model_run(path, runtime))
    else:
        path = published_checkpoint(cfg) if cfg.hub else cfg.checkpoint_path
        if log:
            log.info("loading %s", path)
        set_context(cfg)
        from nasfpn.inference.build import (
            build_inference_network,
        )  # imports MindSpore (~3 s): not for an .onnx

        runtime = open_runtime(build_inference_network(cfg, path, expected_sha256(cfg, path)))
    if raw_outputs_for:
        check_raw_runtime(runtime, path, raw_outputs_for)
    check_runtime_input(runtime, cfg.img_shape, batch_size or model_batch_size(runtime))
    if num_classes is not None:
        check_runtime_classes(runtime, num_classes)
    return runtime, path
