"""Build the inference network from a Config (and optionally load a checkpoint into it)."""

import contextlib

from mindspore.nn.utils import no_init_parameters

from nasfpn.ops.boxes import Anchors
from nasfpn.model_files.checkpoint import load_checkpoint_into
from nasfpn.model import RetinaNetInfer, build_detector


def build_inference_network(cfg, checkpoint_path="", expected_sha256=""):
    """RetinaNetInfer of the config's model and anchors sections; loads `checkpoint_path`
    strictly when given (its EMA weights when it holds them and inference.use_ema)."""
    cfg.model.check_exit_stage(checkpoint_path or "the model")
    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    # Strict loading sets every parameter or refuses: the release initialisation (seconds of
    # truncated-normal numbers for R-50 on a CPU) would only be overwritten, so it is skipped.
    with no_init_parameters() if checkpoint_path else contextlib.nullcontext():
        net = RetinaNetInfer(
            build_detector(cfg.model, cfg.anchors), anchors.cycxhw, cfg.anchors.prior_scaling
        )
    if checkpoint_path:
        load_checkpoint_into(
            net, checkpoint_path, expected_sha256=expected_sha256, use_ema=cfg.inference.use_ema
        )
    net.set_train(False)
    return net
