"""Model-level options checked by value: the prior-probability bias and the loss options of the
training wrapper (defaults gamma 2, alpha 0.75; given values passed on)."""
import math

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from src.model.detector import RetinaNetWithLoss
from src.model.retina_head import prior_bias
from tests.test_loss_terms import numpy_total


@pytest.mark.parametrize("p", [0.01, 0.2])
def test_prior_bias_gives_sigmoid_p_for_objects_and_1_minus_p_for_background(p):
    bias = prior_bias(p, 2, 3).asnumpy().reshape(2, 3)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias.astype(np.float64))),
                               [[1 - p, p, p]] * 2, rtol=1e-6)
    assert bias[0, 0] == pytest.approx(math.log((1 - p) / p), rel=1e-6)


class FixedOutputs(nn.Cell):
    """A stand-in detector body that returns given (loc, logits) whatever the images."""

    def __init__(self, loc, logits):
        super().__init__()
        self.loc, self.logits = ms.Tensor(loc), ms.Tensor(logits)

    def construct(self, images):
        return self.loc, self.logits


@pytest.fixture(scope="module")
def outputs():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(9)
    n, a, c = 2, 30, 4
    label = rng.integers(0, c, size=(n, a)).astype(np.int32)
    label[:, 1::3] = 0
    return dict(loc=rng.normal(size=(n, a, 4)).astype(np.float32),
                logits=rng.normal(scale=2, size=(n, a, c)).astype(np.float32),
                gt_loc=rng.normal(size=(n, a, 4)).astype(np.float32), label=label,
                num=np.count_nonzero(label, axis=1).astype(np.int32)[:, None], c=c)


@pytest.mark.parametrize("options", [(), (1.0, 0.25)])
def test_with_loss_uses_the_given_or_default_focal_options(outputs, options):
    o = outputs
    net = RetinaNetWithLoss(FixedOutputs(o["loc"], o["logits"]), o["c"], *options)
    images = ms.Tensor(np.zeros((2, 3, 8, 8), np.float32))
    got = float(net(images, ms.Tensor(o["gt_loc"]), ms.Tensor(o["label"]), ms.Tensor(o["num"])).asnumpy())
    gamma, alpha = options or (2.0, 0.75)
    assert got == pytest.approx(numpy_total(o["loc"], o["logits"], o["gt_loc"], o["label"], o["num"],
                                            gamma, alpha), rel=1e-5)
