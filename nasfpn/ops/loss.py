"""RetinaNet losses (docs/conventions.md#loss) as MindSpore cells."""

import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import dtype as mstype


class SigmoidFocalLoss(nn.Cell):
    """Element-wise sigmoid focal loss against one-hot labels over all classes (background column 0
    included): alpha weighs the positive term, 1 - alpha the negative one."""

    def __init__(self, num_classes, gamma=2.0, alpha=0.75):
        super().__init__()
        self.num_classes = num_classes
        self.gamma = gamma
        self.alpha = alpha

    def construct(self, logits, labels):
        target = ops.one_hot(
            labels, self.num_classes, ops.ones((), logits.dtype), ops.zeros((), logits.dtype)
        )
        ce = ops.binary_cross_entropy_with_logits(
            logits, target, ops.ones_like(logits), ops.ones_like(logits), reduction="none"
        )
        prob = ops.sigmoid(logits)
        p_t = target * prob + (1 - target) * (1 - prob)
        alpha_t = target * self.alpha + (1 - target) * (1 - self.alpha)
        return ops.pow(1 - p_t, self.gamma) * alpha_t * ce


def smooth_l1(pred, target, beta=1.0):
    diff = ops.abs(pred - target)
    return ops.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


class RetinaNetLoss(nn.Cell):
    """(focal + smooth-L1 over positives) summed over the batch / positives in the batch.

    The release divides by the raw positive count; a batch without positives would give inf, so
    the count is clamped at 1 (only ever matters for such a batch).

    `positives_group_size` > 1 (normalize_positives_over_devices under distributed training): the
    count is the positives of all devices (an all-reduced SUM, float32, the only reduction CPU
    supports) divided by the number of devices, then clamped at 1. The gradient reducer averages
    the devices' gradients, so the step follows (sum of all devices' losses) / (all positives):
    every image weighs the same whichever device holds it. With one device (or the option off) the
    count is the device's own, exactly the loss above.
    """

    def __init__(self, num_classes, gamma=2.0, alpha=0.75, positives_group_size=1):
        super().__init__()
        self.focal = SigmoidFocalLoss(num_classes, gamma, alpha)
        self.over_devices = int(positives_group_size) > 1
        if self.over_devices:
            self.all_reduce = ops.AllReduce(ops.ReduceOp.SUM)
            self.group_size = float(positives_group_size)

    def positive_count(self, num_match):
        count = ops.cast(num_match, mstype.float32).sum()
        if self.over_devices:  # a count, not a function of the weights: no gradient through it
            count = ops.stop_gradient(self.all_reduce(count)) / self.group_size
        return ops.maximum(count, 1.0)

    def construct(self, pred_loc, pred_cls, gt_loc, gt_label, num_match):
        positive = ops.cast(gt_label > 0, mstype.float32)
        num_pos = self.positive_count(num_match)
        loc = smooth_l1(pred_loc, gt_loc).mean(axis=-1) * positive
        cls = self.focal(pred_cls, gt_label)
        return (cls.sum() + loc.sum()) / num_pos
