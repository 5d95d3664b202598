"""The release's learning-rate schedule as a formula (docs/conventions.md#training).

Five linear warm-up phases, then a cosine from lr_max to lr_end. Phase k runs from boundary
b_{k-1} to b_k (in steps, b_0 = 0) and interpolates linearly from `start_k` to lr_max * `end_k`:

    lr(i) = start_k * (b_k - i) / (b_k - b_{k-1}) + lr_max * end_k * (i - b_{k-1}) / (b_k - b_{k-1})

with start_1 = lr_init and (start_k, end_k) from WARMUP_PHASES below. After b_5:

    lr(i) = lr_end + (lr_max - lr_end) * (1 + cos(pi * (i - b_5) / (total - b_5))) / 2

Negative values are clamped to 0. A phase of 0 epochs is skipped.
"""
import math

import numpy as np

# (start value, end value as a fraction of lr_max) of warm-up phases 2..5; phase 1 starts at lr_init.
WARMUP_PHASES = ((None, 1e-4 / 3), (1e-5, 1e-3), (1e-4, 1e-2), (1e-3, 1e-1), (1e-2, 1.0))
RELEASE_BATCH = 8 * 16  # the release's lr (0.1) is for 8 devices x 16 images


def release_lr_schedule(total_steps, steps_per_epoch, lr_max, lr_init=1e-6, lr_end_rate=5e-3,
                        warmup_epochs=(2, 5, 23, 60, 160)):
    """float32 learning rate for each step 0..total_steps-1."""
    if len(warmup_epochs) != len(WARMUP_PHASES):
        raise ValueError(f"expected {len(WARMUP_PHASES)} warm-up phase lengths, got {list(warmup_epochs)}")
    steps = np.arange(total_steps, dtype=np.float64)
    lr = np.zeros(total_steps, np.float64)
    boundaries = np.cumsum([0] + [e * steps_per_epoch for e in warmup_epochs])
    for k, (start, end) in enumerate(WARMUP_PHASES):
        lo, hi = boundaries[k], boundaries[k + 1]
        if hi <= lo:
            continue
        start = lr_init if start is None else start
        in_phase = (steps >= lo) & (steps < hi)
        i = steps[in_phase]
        lr[in_phase] = start * (hi - i) / (hi - lo) + lr_max * end * (i - lo) / (hi - lo)
    last = boundaries[-1]
    lr_end = lr_end_rate * lr_max
    decay = steps >= last
    if decay.any():
        span = max(total_steps - last, 1)
        lr[decay] = lr_end + (lr_max - lr_end) * (1 + np.cos(math.pi * (steps[decay] - last) / span)) / 2
    return np.maximum(lr, 0.0).astype(np.float32)


def lr_schedule_from_config(cfg, steps_per_epoch, global_batch):
    """The schedule for cfg.epoch_size epochs; lr scaled to the global batch when asked."""
    lr_max = effective_lr(cfg, global_batch)
    warmup = [cfg.warmup_epochs1, cfg.warmup_epochs2, cfg.warmup_epochs3, cfg.warmup_epochs4,
              cfg.warmup_epochs5]
    return release_lr_schedule(cfg.epoch_size * steps_per_epoch, steps_per_epoch, lr_max,
                               cfg.lr_init, cfg.lr_end_rate, warmup)


def effective_lr(cfg, global_batch):
    """cfg.lr, scaled linearly from the release's 128-image batch when lr_scale_by_batch is on."""
    return cfg.lr * global_batch / RELEASE_BATCH if cfg.lr_scale_by_batch else cfg.lr
