"""Random-weight networks whose outputs look like a trained network's (for comparing runtimes).

The heads are initialised with small weights (std ~0.02) and a class prior of 0.01, so a random
network scores every anchor ~0.01 and puts every box on its anchor: any two runtimes then agree
trivially, and eval finds nothing. Scaling the head weights up (with a prior of 0.5: zero class
bias) gives logits of several units, scores spread over (0, 1) and boxes away from the anchors.
"""

import numpy as np

HEAD_GAIN = 30.0
SPREAD_PRIOR = ("--cls_prior_probability=0.5",)


def spread_heads(net, gain=HEAD_GAIN):
    """Multiply every head conv weight of `net` by `gain` in place; returns net."""
    import mindspore as ms

    for name, param in net.parameters_and_names():
        if ".head." in f".{name}" and name.endswith(".weight"):
            param.set_data(ms.Tensor(param.asnumpy() * np.float32(gain)))
    return net
