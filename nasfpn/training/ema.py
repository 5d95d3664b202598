"""Exponential moving average (EMA) of the detector's weights, for --ema (docs/training.md).

After every applied optimizer step (not after an accumulation micro-step, not after a step skipped
for non-finite gradients), every network parameter p - the trained ones and the BatchNorm moving
statistics alike, as timm and YOLOX do - moves its average a:

    a <- d_t * a + (1 - d_t) * p,    d_t = ema_decay * (1 - exp(-t / ema_warmup_steps))

with t = 1, 2, ... the update's number (d_t = ema_decay when ema_warmup_steps is 0). The warm-up
is mmdetection's ExpMomentumEMA / YOLOX's: the first averages follow the weights closely, so the
average does not remember the random initialisation for thousands of steps. d_t is computed in
float64 on the host and rounded once to float32; the update runs as one compiled graph.

MindSpore 2.8 itself offers no EMA (no cell, no callback); mindcv and mindyolo carry one inside
their own train-step cells, which would replace this project's train step and add a dependency.

Checkpoints hold the averages as `ema.<parameter name>` and the count as `ema.updates`
(nasfpn/model_files/checkpoint.py); resume restores both, so a resumed run continues the same average.
"""

import math

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor

from nasfpn.model_files.checkpoint import EMA_PREFIX, EMA_UPDATES, CheckpointError
from nasfpn.training.hooks import Hook


def decay_at(update, decay, warmup_steps):
    """d_t of update number `update` (1-based): see the module docstring."""
    if warmup_steps == 0:
        return float(decay)
    return float(decay) * (1.0 - math.exp(-update / warmup_steps))


_move_average = ops.MultitypeFuncGraph("_move_average")


@_move_average.register("Tensor", "Tensor", "Tensor")
def _tensor_move_average(decay, average, weight):
    # a + (1 - d)(p - a): the same average, but a weight that did not move (a frozen stage, an
    # unused BatchNorm statistic) leaves it bit-exact, where d * a + (1 - d) * a rounds.
    decay = decay.astype(average.dtype)
    return ops.assign(average, average + (1 - decay) * (weight - average))


class WeightAverage(nn.Cell):
    """The averages of a detector's parameters, stored as `ema.<parameter name>`, and the number
    of updates so far."""

    def __init__(self, detector, decay, warmup_steps):
        super().__init__(auto_prefix=False)
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        places, params = zip(*detector.parameters_and_names())
        self.places = list(places)  # each parameter's path inside the detector
        self.weights = ParameterTuple(params)
        self.averages = self.weights.clone(prefix=EMA_PREFIX.rstrip("."), init="same")
        self.updates = Parameter(Tensor(np.zeros(1, np.int32)), name=EMA_UPDATES, requires_grad=False)
        self.hyper_map = ops.HyperMap()
        self.one = Tensor(np.ones(1, np.int32))

    def construct(self, decay):
        moved = self.hyper_map(ops.partial(_move_average, decay), self.averages, self.weights)
        counted = ops.assign_add(self.updates, self.one)
        return ops.depend(decay, (moved, counted))

    def update_count(self):
        return int(self.updates.asnumpy().reshape(-1)[0])

    def update(self):
        """One update after an applied optimizer step."""
        self(Tensor(decay_at(self.update_count() + 1, self.decay, self.warmup_steps), ms.float32))

    def start_from_weights(self):
        """Averages = the current weights, count 0 (a new run, or one resumed without averages)."""
        for average, weight in zip(self.averages, self.weights):
            average.set_data(Tensor(weight.asnumpy().copy()))
        self.updates.set_data(Tensor(np.zeros(1, np.int32)))

    def checkpoint_parameters(self):
        """What a checkpoint holds of it (nasfpn/training/checkpoint_store.py)."""
        return [{"name": p.name, "data": p} for p in (*self.averages, self.updates)]

    def state_in(self, param_dict, path):
        """The entries of a checkpoint's `param_dict` for this average: {} when it holds none;
        CheckpointError when it holds some but not all of them, or misshapen ones."""
        names = [p.name for p in (*self.averages, self.updates)]
        found = [name for name in names if name in param_dict]
        if not found:
            return {}
        missing = [name for name in names if name not in param_dict]
        wrong = [
            f"{p.name} {list(param_dict[p.name].shape)} (expected {list(p.shape)})"
            for p in (*self.averages, self.updates)
            if p.name in param_dict and tuple(param_dict[p.name].shape) != tuple(p.shape)
        ]
        if missing or wrong:
            detail = (
                f"{len(missing)} missing, e.g. {missing[0]}"
                if missing
                else f"{len(wrong)} with the wrong shape, e.g. {wrong[0]}"
            )
            raise CheckpointError(
                f"{path} holds an incomplete EMA state ({detail}); it cannot be resumed from"
            )
        return {name: param_dict[name] for name in names}

    def load_state(self, state):
        """Assign the entries returned by `state_in` (all present and shaped right)."""
        for param in (*self.averages, self.updates):
            param.set_data(Tensor(state[param.name].asnumpy().astype(ms.dtype_to_nptype(param.dtype))))

    def copy_into(self, detector):
        """Set `detector` (a freshly built one of the same options) to the averages, matched by
        each parameter's place in the network, whatever names its wrappers gave it."""
        averages = dict(zip(self.places, self.averages))
        own = dict(detector.parameters_and_names())
        if sorted(own) != sorted(averages):
            raise ValueError("copy_into: the detector's parameters are not the averaged network's")
        for name, param in own.items():
            param.set_data(Tensor(averages[name].asnumpy().copy()))
        return detector


class EmaUpdate(Hook):
    """Runs the EMA update after each step whose update was applied (run.overflow: skipped)."""

    def __init__(self, average):
        self.average = average

    def after_step(self, run):
        if not run.overflow:
            self.average.update()
