"""Focal and smooth-L1 losses against numpy references written here (docs/conventions.md#loss):
the release's values, each term with its options moved, 0 or 1 positive, positives over devices."""

import mindspore as ms
import numpy as np
import pytest

from nasfpn.ops.loss import RetinaNetLoss, SigmoidFocalLoss, smooth_l1

from tests.helpers.modes import switch_mode


# Focal and smooth-L1 losses against numpy references written here (docs/conventions.md#loss).


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
    np.testing.assert_allclose(ours.asnumpy(), numpy_loss(pred_loc, logits, gt_loc, label, num), rtol=1e-5)


# The loss terms one by one against numpy written here, with the options the main loss test keeps
# at the release's values (beta 1, gamma 2, alpha 0.75) moved, and batches with 0 or 1 positive.


def numpy_focal(logits, label, gamma, alpha):
    onehot = np.eye(logits.shape[-1])[label]
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    ce = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
    p_t = onehot * p + (1 - onehot) * (1 - p)
    return (1 - p_t) ** gamma * (onehot * alpha + (1 - onehot) * (1 - alpha)) * ce


def numpy_smooth_l1(pred, target, beta):
    d = np.abs(pred.astype(np.float64) - target)
    return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def numpy_total(pred_loc, logits, gt_loc, label, num_match, gamma=2.0, alpha=0.75):
    loc = numpy_smooth_l1(pred_loc, gt_loc, 1.0).mean(-1) * (label > 0)
    return (numpy_focal(logits, label, gamma, alpha).sum() + loc.sum()) / max(num_match.sum(), 1)


@pytest.fixture(scope="module")
def batch(request):
    switch_mode(request, ms.PYNATIVE_MODE)
    rng = np.random.default_rng(5)
    n, a, c = 2, 40, 5
    label = rng.integers(0, c, size=(n, a)).astype(np.int32)
    label[:, ::2] = 0
    return dict(
        pred_loc=rng.normal(size=(n, a, 4)).astype(np.float32),
        logits=rng.normal(scale=3, size=(n, a, c)).astype(np.float32),
        gt_loc=rng.normal(size=(n, a, 4)).astype(np.float32),
        label=label,
        c=c,
    )


def run_loss(loss, b, label, num_match):
    args = (b["pred_loc"], b["logits"], b["gt_loc"], label, num_match)
    return float(loss(*(ms.Tensor(v) for v in args)).asnumpy())


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_smooth_l1_beta(beta):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    pred = np.array([0.0, 0.2, 0.5, 1.0, 1.9, 2.0, 3.5, -4.0], np.float32)
    target = np.zeros_like(pred)
    ours = smooth_l1(ms.Tensor(pred), ms.Tensor(target), beta).asnumpy()
    np.testing.assert_allclose(ours, numpy_smooth_l1(pred, target, beta), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gamma,alpha", [(1.0, 0.25), (3.0, 0.5), (2.0, 0.75)])
def test_focal_loss_gamma_and_alpha(batch, gamma, alpha):
    ours = SigmoidFocalLoss(batch["c"], gamma, alpha)(
        ms.Tensor(batch["logits"]), ms.Tensor(batch["label"])
    ).asnumpy()
    np.testing.assert_allclose(
        ours, numpy_focal(batch["logits"], batch["label"], gamma, alpha), rtol=1e-4, atol=1e-6
    )


def test_defaults_are_gamma_2_alpha_0_75(batch):
    ours = SigmoidFocalLoss(batch["c"])(ms.Tensor(batch["logits"]), ms.Tensor(batch["label"]))
    np.testing.assert_allclose(
        ours.asnumpy(), numpy_focal(batch["logits"], batch["label"], 2.0, 0.75), rtol=1e-4, atol=1e-6
    )
    num = np.count_nonzero(batch["label"], axis=1).astype(np.int32)[:, None]
    total = run_loss(RetinaNetLoss(batch["c"]), batch, batch["label"], num)
    assert total == pytest.approx(
        numpy_total(batch["pred_loc"], batch["logits"], batch["gt_loc"], batch["label"], num), rel=1e-5
    )


def test_retinanet_loss_passes_gamma_and_alpha_on(batch):
    num = np.count_nonzero(batch["label"], axis=1).astype(np.int32)[:, None]
    total = run_loss(RetinaNetLoss(batch["c"], 1.0, 0.25), batch, batch["label"], num)
    assert total == pytest.approx(
        numpy_total(batch["pred_loc"], batch["logits"], batch["gt_loc"], batch["label"], num, 1.0, 0.25),
        rel=1e-5,
    )


@pytest.mark.parametrize("positives", [0, 1])
def test_zero_or_one_positive_divides_by_one(batch, positives):
    label = np.zeros_like(batch["label"])
    label[0, 3] = 2 if positives else 0
    num = np.array([[positives], [0]], np.int32)
    total = run_loss(RetinaNetLoss(batch["c"]), batch, label, num)
    expected = numpy_total(batch["pred_loc"], batch["logits"], batch["gt_loc"], label, num)
    assert total == pytest.approx(expected, rel=1e-5)
    # the division is by one: the sum of the terms itself
    focal_sum = numpy_focal(batch["logits"], label, 2.0, 0.75).sum()
    assert total > focal_sum * 0.99


# Positives normalised over all devices (normalize_positives_over_devices): one device keeps the
# release's loss bit for bit; two msrun processes each divide by the mean positive count of both.


def test_on_one_device_the_option_keeps_the_loss_exactly(batch):
    from nasfpn.training.train_step import positives_group_size

    assert positives_group_size(True, 1) == 1 and positives_group_size(False, 8) == 1
    assert positives_group_size(True, 8) == 8
    num = np.count_nonzero(batch["label"], axis=1).astype(np.int32)[:, None]
    option_on = RetinaNetLoss(batch["c"], positives_group_size=positives_group_size(True, 1))
    assert not option_on.over_devices  # no all-reduce in the graph at all
    assert run_loss(option_on, batch, batch["label"], num) == run_loss(
        RetinaNetLoss(batch["c"]), batch, batch["label"], num
    )


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loss_terms(run):
    """The focal + smooth-L1 sum of one rank's inputs (numpy, float64)."""
    loc = numpy_smooth_l1(run["pred_loc"], run["gt_loc"], 1.0).mean(-1) * (run["label"] > 0)
    return numpy_focal(run["logits"], run["label"], 2.0, 0.75).sum() + loc.sum()


@pytest.mark.slow
def test_two_msrun_processes_divide_by_the_positives_of_both(repo_root, tmp_path):
    import os
    import subprocess

    run = subprocess.run(
        [
            "msrun",
            "--worker_num=2",
            "--local_worker_num=2",
            f"--master_port={_free_port()}",
            f"--log_dir={tmp_path / 'logs'}",
            "--join=True",
            "--cluster_time_out=60",
            "tests/helpers/loss_over_devices.py",
            str(tmp_path),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    logs = "".join(
        open(tmp_path / "logs" / f"worker_{r}.log").read()[-1500:]
        for r in (0, 1)
        if os.path.exists(tmp_path / "logs" / f"worker_{r}.log")
    )
    assert run.returncode == 0, run.stderr[-1500:] + logs
    ranks = [np.load(tmp_path / f"rank_{r}.npz") for r in (0, 1)]
    assert [int(r["group_size"]) for r in ranks] == [2, 2]
    counts = [int(r["num_match"].sum()) for r in ranks]
    assert counts == [3, 23]  # tests/helpers/loss_over_devices.py: (1, 2) and (9, 14) positives
    for r in ranks:
        expected = _loss_terms(r) / max(sum(counts) / 2, 1.0)
        # A float32 sum of the 480 positive terms of one rank is within n u = 480 x 6e-8 = 3e-5
        # of the float64 one (no cancellation); the division adds half an ulp.
        np.testing.assert_allclose(r["loss"], expected, rtol=3e-5, atol=0)
        # what the rank's own count would give differs by a factor 13/3 or 13/23
        assert abs(_loss_terms(r) / int(r["num_match"].sum()) / expected - 1) > 0.4
