"""One training step: loss, scaled gradients, (all-reduce), unscale, optional clipping, update.

Built on MindSpore's TrainOneStepWithLossScaleCell so overflow detection, dynamic loss scaling and
the distributed gradient reducer are MindSpore's own; a step whose gradients are not finite is
skipped (weights untouched) and reported.

Gradient accumulation (accumulate_steps K > 1): a call with apply_update=False only adds this
batch's unscaled gradients into buffers (`accumulated.<parameter name>`); the call with
apply_update=True adds its own, takes the mean of the K, all-reduces it once, checks it, clips it,
updates the weights and clears the buffers. The two variants are two compiled graphs (the flag is a
Python constant). The buffers are zero at every optimizer-step boundary, so checkpoints leave them
out (`checkpoint_parameters`).
"""

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Tensor

ACCUMULATED_PREFIX = "accumulated"


class TrainStep(nn.TrainOneStepWithLossScaleCell):
    """(images, gt_loc, gt_label, num_match[, apply_update]) -> (loss, overflow, loss scale)."""

    def __init__(
        self,
        net_with_loss,
        optimizer,
        loss_scale=1024.0,
        dynamic=False,
        grad_clip_norm=0.0,
        accumulate_steps=1,
    ):
        if dynamic:
            scale = nn.DynamicLossScaleUpdateCell(
                loss_scale_value=float(loss_scale), scale_factor=2, scale_window=1000
            )
        else:
            scale = Tensor(float(loss_scale), ms.float32)
        super().__init__(net_with_loss, optimizer, scale_sense=scale)
        self.grad_clip_norm = float(grad_clip_norm)
        self.clip = self.grad_clip_norm > 0
        self.cpu_target = ms.get_context("device_target") == "CPU"
        self.accumulate_steps = int(accumulate_steps)
        self.accumulates = self.accumulate_steps > 1
        if self.accumulates:
            self.accumulated = self.weights.clone(prefix=ACCUMULATED_PREFIX, init="zeros")
            self.mean_factor = 1.0 / self.accumulate_steps
        self.no_overflow = Tensor(False, ms.bool_)

    def construct(self, images, gt_loc, gt_label, num_match, apply_update=True):
        inputs = (images, gt_loc, gt_label, num_match)
        loss = self.network(*inputs)
        scale = self.scale_sense
        status = Tensor([0] * 8, ms.int32)
        grads = self.grad(self.network, self.weights)(*inputs, ops.ones_like(loss) * scale.astype(loss.dtype))
        grads = self.hyper_map(ops.partial(_unscale, scale), grads)
        if self.accumulates:
            sums = self.hyper_map(_add_into, self.accumulated, grads)
            if not apply_update:  # the loss depends on the sums, so the graph keeps the additions
                return ops.depend(loss, sums), self.no_overflow, scale
            grads = self.hyper_map(ops.partial(_times, self.mean_factor), sums)
        grads = self.grad_reducer(grads)
        overflow = self.check_overflow(status, grads)
        overflow = self.process_loss_scale(overflow)
        if self.clip:
            grads = ops.clip_by_global_norm(grads, self.grad_clip_norm)
        if not overflow:
            loss = ops.depend(loss, self.optimizer(grads))
        if self.accumulates:  # after the update has read them (a skipped update drops them too)
            loss = ops.depend(loss, self.hyper_map(_clear, self.accumulated))
        return loss, overflow, scale

    def check_overflow(self, status, grads):
        """MindSpore's own check on Ascend/GPU; on CPU (which it lacks) any non-finite gradient.

        On CPU: is the sum of all gradient elements finite? inf and NaN propagate through a sum
        (inf - inf is NaN), so it is non-finite exactly when some element is - or when finite
        gradients sum past float32's 3.4e38, which is a diverged step as well. One reduction per
        gradient instead of four elementwise passes: 300 ms -> ~10 ms per step for the full
        network's 86M gradient values on the 2-core build machine (bench/RESULTS.md)."""
        if self.cpu_target:
            return ops.logical_not(ops.isfinite(ops.addn(self.hyper_map(_total, grads))))
        return self.get_overflow_status(status, grads)

    def checkpoint_parameters(self):
        """What a checkpoint holds: network, BN statistics, optimizer state, step - not the
        accumulation buffers (zero whenever a checkpoint is written)."""
        return [
            {"name": p.name, "data": p}
            for p in self.get_parameters()
            if not p.name.startswith(ACCUMULATED_PREFIX + ".")
        ]


_total = ops.MultitypeFuncGraph("_total")


@_total.register("Tensor")
def _tensor_total(grad):
    return grad.astype(ms.float32).sum()


_add_into = ops.MultitypeFuncGraph("_add_into")


@_add_into.register("Tensor", "Tensor")
def _tensor_add_into(buffer, grad):
    """buffer += grad; returns the new sum."""
    return ops.assign_add(buffer, grad)


_clear = ops.MultitypeFuncGraph("_clear")


@_clear.register("Tensor")
def _tensor_clear(buffer):
    return ops.assign(buffer, ops.zeros_like(buffer))


def _times(factor, grad):
    return grad * factor


def _unscale(scale, grad):
    return grad * ops.reciprocal(scale).astype(grad.dtype)


def positives_group_size(normalize_over_devices, group_size):
    """The device count RetinaNetLoss normalises the positives over: all devices when
    normalize_positives_over_devices is on and there is more than one, else 1 (each device its own
    count, the release's loss)."""
    return int(group_size) if normalize_over_devices and int(group_size) > 1 else 1


def build_optimizer(net_with_loss, lr_per_step, momentum=0.9, weight_decay=1.5e-4):
    """Momentum over every trainable parameter with a per-step lr array, as the release; weight decay
    reaches the conv weights only (MindSpore skips parameters named beta/gamma by default)."""
    return nn.Momentum(
        net_with_loss.trainable_params(),
        learning_rate=Tensor(lr_per_step),
        momentum=momentum,
        weight_decay=weight_decay,
    )
