"""Small building blocks shared by the backbone, neck and head."""
import mindspore.nn as nn
from mindspore.common.initializer import TruncatedNormal

# Release initialisation: every conv weight ~ TruncatedNormal(0.02) cut at two sigmas (MindSpore 1.x
# semantics; 2.x takes absolute bounds, so they are given explicitly); BN gamma=1, beta=0.
WEIGHT_INIT_SIGMA = 0.02


def _weight_init():
    return TruncatedNormal(WEIGHT_INIT_SIGMA, a=-2 * WEIGHT_INIT_SIGMA, b=2 * WEIGHT_INIT_SIGMA)


def conv2d(in_channels, out_channels, kernel_size, stride=1, padding=None, bias_init=None):
    """Conv without bias (unless `bias_init` is given); 'same' padding unless an explicit symmetric
    `padding` is given."""
    bias = {} if bias_init is None else {"has_bias": True, "bias_init": bias_init}
    bias.setdefault("has_bias", False)
    if padding is None:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="same",
                         weight_init=_weight_init(), **bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                     padding=padding, weight_init=_weight_init(), **bias)


def batch_norm(channels, eps, momentum, gamma_init="ones"):
    """BatchNorm2d with MindSpore's momentum convention: running = m*running + (1-m)*batch."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum, gamma_init=gamma_init)


class ConvBn(nn.Cell):
    """1x1 conv + BN without activation (the release's Conv2dBnAct with no act): `conv`, `batchnorm`."""

    def __init__(self, in_channels, out_channels, bn_eps, bn_momentum):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, 1)
        self.batchnorm = batch_norm(out_channels, bn_eps, bn_momentum)

    def construct(self, x):
        return self.batchnorm(self.conv(x))
