"""Focal and smooth-L1 losses against numpy references written here (docs/conventions.md#loss)."""
import mindspore as ms
import numpy as np

from src.loss import RetinaNetLoss


def numpy_loss(pred_loc, logits, gt_loc, label, num_match, gamma=2.0, alpha=0.75):
    onehot = np.eye(logits.shape[-1])[label]
    p = 1 / (1 + np.exp(-logits))
    ce = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
    p_t = onehot * p + (1 - onehot) * (1 - p)
    focal = (1 - p_t) ** gamma * (onehot * alpha + (1 - onehot) * (1 - alpha)) * ce
    d = np.abs(pred_loc - gt_loc)
    sl1 = np.where(d < 1, 0.5 * d * d, d - 0.5).mean(-1) * (label > 0)
    per_image = (focal.sum((1, 2)) + sl1.sum(1)) / num_match.sum()
    return per_image.sum()


def test_loss_matches_numpy_reference():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(0)
    n, a, c = 2, 50, 6
    pred_loc = rng.normal(size=(n, a, 4)).astype(np.float32)
    gt_loc = rng.normal(size=(n, a, 4)).astype(np.float32)
    logits = rng.normal(scale=3, size=(n, a, c)).astype(np.float32)
    label = rng.integers(0, c, size=(n, a)).astype(np.int32)
    label[:, ::2] = 0
    num = np.count_nonzero(label, axis=1).astype(np.int32)[:, None]
    ours = RetinaNetLoss(c, 2.0, 0.75)(*(ms.Tensor(v) for v in (pred_loc, logits, gt_loc, label, num)))
    np.testing.assert_allclose(ours.asnumpy(), numpy_loss(pred_loc, logits, gt_loc, label, num),
                               rtol=1e-5)
