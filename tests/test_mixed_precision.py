"""amp_level O2 / O3 with the pieces that look cells up by path: an ImageNet backbone file, the EMA
of the weights, synchronised BN. O2 wraps each black-listed cell (BatchNorm) as `<bn>._backbone`,
renaming its path but not its parameters.

No amp runs here (CPU trains in float32): device_target GPU in the config only makes the trainer
apply amp to its cells; nothing is compiled or run on a device.
"""

import mindspore.nn as nn
import numpy as np
import pytest

from nasfpn.config.flat import ConfigError
from nasfpn.model import RetinaNetWithLoss, build_detector
from nasfpn.model.layers import synchronise_batch_norms
from nasfpn.training.trainer import Trainer, mixed_precision
from tests.conftest import TINY, make_config
from tests.test_backbone_weights import random_tensors, save_ckpt, zoo_resnet18_shapes

O2_ON_GPU = (*TINY, "--num_classes=4", "--device_target=GPU", "--amp_level=O2")


def _wrapped_paths(net):
    """Paths of the cells MindSpore's O2 wrapped: `<path>._backbone` holds the float32 cell."""
    return {
        name[: -len("._backbone")]: type(cell)
        for name, cell in net.cells_and_names()
        if name.endswith("._backbone")
    }


def test_o2_loads_a_backbone_file_into_its_wrapped_batch_norms(tmp_path):
    tensors = random_tensors(zoo_resnet18_shapes(), 3)
    path = save_ckpt(tensors, tmp_path / "r18.ckpt")
    trainer = Trainer(
        make_config(
            *O2_ON_GPU, f"--save_checkpoint_path={tmp_path / 'out'}", f"--backbone_pretrained={path}"
        ),
        4,
    )
    assert any(".bn1._backbone." in name for name, _ in trainer.net.parameters_and_names())
    trainer.restore()
    params = {p.name: p.asnumpy() for p in trainer.detector.get_parameters()}
    np.testing.assert_array_equal(
        params["network.backbone.bn1.moving_variance"], tensors["bn1.moving_variance"]
    )
    np.testing.assert_array_equal(
        params["network.backbone.layer4.1.bn2.gamma"], tensors["layer4.1.bn2d.gamma"]
    )


def test_o2_with_ema_evaluates_the_average_in_a_plain_detector(tmp_path):
    trainer = Trainer(make_config(*O2_ON_GPU, f"--save_checkpoint_path={tmp_path}", "--ema=True"), 4)
    trainer.restore()
    detector = trainer.detector_to_evaluate()
    trained = {
        p.name.removeprefix("network."): p.asnumpy().tobytes() for p in trainer.detector.get_parameters()
    }
    # no update yet: the average is the weights (the detector to evaluate is the inference network)
    assert {p.name: p.asnumpy().tobytes() for p in detector.get_parameters()} == trained


def test_o2_keeps_synchronised_batch_norm_float32_as_it_keeps_batch_norm():
    cfg = make_config(*TINY, "--num_classes=4")
    plain, synced = build_detector(cfg.model, cfg.anchors), build_detector(cfg.model, cfg.anchors)
    assert synchronise_batch_norms(synced, process_groups=0) > 0
    plain_wrapped = _wrapped_paths(mixed_precision(RetinaNetWithLoss(plain, 4), "O2"))
    synced_wrapped = _wrapped_paths(mixed_precision(RetinaNetWithLoss(synced, 4), "O2"))
    assert plain_wrapped and set(plain_wrapped.values()) == {nn.BatchNorm2d}
    assert synced_wrapped.keys() == plain_wrapped.keys()  # every BN, at the same paths
    assert set(synced_wrapped.values()) == {nn.SyncBatchNorm}


def test_o2_shares_the_parameters_and_returns_a_float32_loss():
    cfg4 = make_config(*TINY, "--num_classes=4")
    net = RetinaNetWithLoss(build_detector(cfg4.model, cfg4.anchors), 4)
    amp = mixed_precision(net, "O2")
    assert [id(p) for p in amp.get_parameters()] == [id(p) for p in net.get_parameters()]
    assert type(amp).__name__ == "_OutputTo32"


def test_o1_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"--amp_level: expected one of \[.O0., .O2., .O3.\], got .O1."):
        make_config(*TINY, "--amp_level=O1")
