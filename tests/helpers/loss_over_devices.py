"""Run by msrun (2 workers) from tests/test_loss.py: each rank computes RetinaNetLoss with the
positives normalised over all devices on inputs of its own (its own number of positives) and
writes the inputs and the loss to OUT_DIR/rank_<rank>.npz.

    msrun --worker_num=2 --local_worker_num=2 ... tests/helpers/loss_over_devices.py OUT_DIR
"""

import os
import sys

import mindspore as ms
import numpy as np

IMAGES, ANCHORS, CLASSES = 2, 40, 5
POSITIVES_PER_IMAGE = {0: (1, 2), 1: (9, 14)}  # rank -> positives of its two images


def rank_inputs(rank):
    """Random predictions and targets; image i of `rank` has POSITIVES_PER_IMAGE[rank][i] positives."""
    rng = np.random.default_rng(100 + rank)
    pred_loc = rng.normal(size=(IMAGES, ANCHORS, 4)).astype(np.float32)
    gt_loc = rng.normal(size=(IMAGES, ANCHORS, 4)).astype(np.float32)
    logits = rng.normal(scale=2, size=(IMAGES, ANCHORS, CLASSES)).astype(np.float32)
    label = np.zeros((IMAGES, ANCHORS), np.int32)
    for image, count in enumerate(POSITIVES_PER_IMAGE[rank]):
        label[image, :count] = rng.integers(1, CLASSES, size=count)
    num_match = np.count_nonzero(label, axis=1).astype(np.int32)[:, None]
    return pred_loc, logits, gt_loc, label, num_match


def main(out_dir):
    from mindspore.communication import get_group_size, get_rank, init
    from nasfpn.ops.loss import RetinaNetLoss

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")  # as training runs
    init()
    rank, size = get_rank(), get_group_size()
    inputs = rank_inputs(rank)
    loss = RetinaNetLoss(CLASSES, 2.0, 0.75, positives_group_size=size)
    value = loss(*(ms.Tensor(v) for v in inputs)).asnumpy()
    np.savez(
        os.path.join(out_dir, f"rank_{rank}.npz"),
        loss=value,
        group_size=size,
        **dict(zip(("pred_loc", "logits", "gt_loc", "label", "num_match"), inputs)),
    )


if __name__ == "__main__":
    main(sys.argv[1])
