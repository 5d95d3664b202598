"""Build the inference network from a Config (and optionally load a checkpoint into it)."""

import contextlib

from mindspore.nn.utils import no_init_parameters

from nasfpn.config.flat import ConfigError
from nasfpn.ops.boxes import Anchors, AnchorSpec
from nasfpn.model_files.checkpoint import load_checkpoint_into
from nasfpn.model import RetinaNetInfer, build_detector


def check_exit_stage(exit_stage, deep_supervision, source):
    """ConfigError for an early exit of a model whose early exits were never trained."""
    if exit_stage and not deep_supervision:
        raise ConfigError(
            f"--exit_stage={exit_stage}: {source} was not trained with deep_supervision, so its "
            "early exits are untrained (only its last stage learned to detect); leave --exit_stage "
            "out, or train with --deep_supervision=True"
        )


def build_inference_network(cfg, checkpoint_path="", expected_sha256=""):
    """RetinaNetInfer for `cfg`; loads `checkpoint_path` strictly when given (its EMA weights when
    it holds them and cfg.use_ema)."""
    check_exit_stage(cfg.exit_stage, cfg.deep_supervision, checkpoint_path or "the model")
    anchors = Anchors(AnchorSpec.from_config(cfg))
    # Strict loading sets every parameter or refuses: the release initialisation (seconds of
    # truncated-normal numbers for R-50 on a CPU) would only be overwritten, so it is skipped.
    with no_init_parameters() if checkpoint_path else contextlib.nullcontext():
        net = RetinaNetInfer(build_detector(cfg), anchors.cycxhw, cfg.prior_scaling)
    if checkpoint_path:
        load_checkpoint_into(net, checkpoint_path, expected_sha256=expected_sha256, use_ema=cfg.use_ema)
    net.set_train(False)
    return net
