"""The learning-rate schedule of docs/conventions.md#training written out step by step: the one
reference that tests/test_lr_schedule.py and tests/test_trainer.py compare the code with."""

import math

import numpy as np

RELEASE_STARTS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # the release's lr at the start of each warm-up phase
RELEASE_EPOCHS = (2, 5, 23, 60, 160)  # its five warm-up phases, in epochs


def reference_lr(total, spe, lr_max, starts, epochs, lr_end_rate=5e-3):
    """`total` steps of `spe` steps per epoch: five linear phases from starts[k] to lr_max x
    (1e-4 / 3, 1e-3, 1e-2, 1e-1, 1) over epochs[k] epochs, then a cosine from lr_max down to
    lr_end_rate x lr_max; float32."""
    ends = (1e-4 / 3, 1e-3, 1e-2, 1e-1, 1.0)
    bounds = [0] + [int(b) for b in np.cumsum(epochs) * spe]
    out = []
    for i in range(total):
        for k in range(5):
            lo, hi = bounds[k], bounds[k + 1]
            if lo <= i < hi:
                lr = starts[k] * (hi - i) / (hi - lo) + lr_max * ends[k] * (i - lo) / (hi - lo)
                break
        else:
            lr_end = lr_end_rate * lr_max
            lr = (
                lr_end
                + (lr_max - lr_end) * (1 + math.cos(math.pi * (i - bounds[5]) / (total - bounds[5]))) / 2
            )
        out.append(max(lr, 0.0))
    return np.array(out, np.float32)
