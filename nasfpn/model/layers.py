"""Small building blocks shared by the backbone, neck and head; synchronised BatchNorm."""

import mindspore.nn as nn
from mindspore.common.initializer import TruncatedNormal

BN_PARAMETERS = ("gamma", "beta", "moving_mean", "moving_variance")

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
        return nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            pad_mode="same",
            weight_init=_weight_init(),
            **bias,
        )
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        pad_mode="pad",
        padding=padding,
        weight_init=_weight_init(),
        **bias,
    )


ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "swish": nn.SiLU}


def activation_cell(name):
    """The activation of the neck and head: relu (the release), relu6 (the mobile models), swish
    (x * sigmoid(x), an option of the authors' reference)."""
    return ACTIVATIONS[name]()


class SeparableConv2d(nn.Cell):
    """Depthwise 3x3 (pad 1, one filter per channel) then pointwise 1x1, both without bias: the
    depthwise-separable conv of NAS-FPNLite (`depthwise`, `pointwise`)."""

    def __init__(self, in_channels, out_channels, bias_init=None):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            pad_mode="pad",
            padding=1,
            group=in_channels,
            has_bias=False,
            weight_init=_weight_init(),
        )
        self.pointwise = conv2d(in_channels, out_channels, 1, bias_init=bias_init)

    def construct(self, x):
        return self.pointwise(self.depthwise(x))


def separable_conv2d(in_channels, out_channels, bias_init=None):
    return SeparableConv2d(in_channels, out_channels, bias_init)


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


def synchronise_batch_norms(network, process_groups=None):
    """Replace every BatchNorm2d of `network` by an nn.SyncBatchNorm with the same eps and momentum
    that holds the very same Parameter objects, so parameter names, values and the checkpoint are
    unchanged; returns how many were replaced. process_groups: nn.SyncBatchNorm's (None: all
    devices, which needs communication initialised; 0: no synchronisation). Call it before the
    network is compiled."""
    replaced = 0
    for _, parent in list(network.cells_and_names()):
        for key, child in list(parent._cells.items()):  # pylint: disable=protected-access
            if not isinstance(child, nn.BatchNorm2d):
                continue
            # _BatchNorm keeps 1 - momentum: give back the momentum in the constructor's convention
            synced = nn.SyncBatchNorm(
                child.num_features,
                eps=child.eps,
                momentum=1.0 - child.momentum,
                process_groups=process_groups,
            )
            for name in BN_PARAMETERS:
                setattr(synced, name, getattr(child, name))
            parent._cells[key] = synced  # pylint: disable=protected-access
            if isinstance(parent, nn.SequentialCell):  # it runs its own list of the cells
                parent.cell_list = list(parent._cells.values())  # pylint: disable=protected-access
            replaced += 1
    return replaced
