"""Weight averaging (--ema, nasfpn/training/ema.py): the arithmetic against numpy over a literal
sequence of weights, no update after a skipped step, and a checkpoint holding EMA weights loaded
into the inference network with those weights. Resume equality with EMA is part of
tests/test_trainer.py's accumulation-cycle resume test."""

import logging
import math

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from nasfpn.model_files.checkpoint import CheckpointError, load_checkpoint_into
from nasfpn.config.flat import ConfigError
from nasfpn.training.ema import EmaUpdate, WeightAverage, decay_at
from nasfpn.training.hooks import RunState
from tests.conftest import TINY, make_config
from tests.helpers.modes import switch_mode

U = 2.0**-24  # float32 unit roundoff

# dense.weight after each of three optimizer steps (index 0: before the first) ...
DENSE_WEIGHTS = [
    [[1.0, 2.0], [3.0, 4.0]],
    [[2.0, 0.0], [-1.0, 5.0]],
    [[0.5, 0.5], [0.5, 0.5]],
    [[10.0, -10.0], [3.0, 3.0]],
]
# ... and a BatchNorm moving mean (a statistic: averaged like the weights)
MOVING_MEANS = [[0.0, 1.0], [4.0, -2.0], [1.0, 1.0], [-3.0, 8.0]]


@pytest.fixture(scope="module", autouse=True)
def graph_mode(request):
    switch_mode(request, ms.GRAPH_MODE)


class _Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(2, 2)
        self.bn = nn.BatchNorm1d(2)

    def construct(self, x):
        return self.bn(self.dense(x))


class _WithLoss(nn.Cell):
    """Holds the network as `network`, as RetinaNetWithLoss does (names `network.<...>`)."""

    def __init__(self):
        super().__init__()
        self.network = _Net()


def _set(param, values):
    param.set_data(ms.Tensor(np.asarray(values, np.float32)))


def test_the_decay_warm_up_is_mmdetections_exp_momentum():
    # 0.9 x (1 - exp(-t / 2)) for t = 1, 2, 3, written out
    assert decay_at(1, 0.9, 2) == pytest.approx(0.9 * (1 - 0.6065306597126334), rel=1e-12)
    assert decay_at(2, 0.9, 2) == pytest.approx(0.9 * (1 - 0.36787944117144233), rel=1e-12)
    assert decay_at(3, 0.9, 2) == pytest.approx(0.9 * (1 - 0.22313016014842982), rel=1e-12)
    assert decay_at(5000, 0.9998, 2000) == pytest.approx(0.9998 * (1 - math.exp(-2.5)), rel=1e-12)
    assert decay_at(1, 0.9998, 0) == 0.9998  # no warm-up: the constant decay from the start


@pytest.mark.parametrize("warmup", [0, 2])
def test_ema_follows_the_formula_over_a_literal_sequence_of_weights(warmup):
    holder = _WithLoss()
    net = holder.network
    _set(net.dense.weight, DENSE_WEIGHTS[0])
    _set(net.bn.moving_mean, MOVING_MEANS[0])
    others = {
        p.name: p.asnumpy().copy()
        for p in net.get_parameters()
        if p.name not in ("network.dense.weight", "network.bn.moving_mean")
    }
    average = WeightAverage(net, decay=0.9, warmup_steps=warmup)
    average.start_from_weights()
    names = [p.name for p in average.averages]
    assert names == ["ema." + p.name for p in net.get_parameters()]
    decays = {0: [0.9, 0.9, 0.9], 2: [0.35412240625862995, 0.5689085029457019, 0.6991828558664132]}[warmup]
    hook = EmaUpdate(average)
    want_dense = np.array(DENSE_WEIGHTS[0], np.float64)
    want_mean = np.array(MOVING_MEANS[0], np.float64)
    for step in (1, 2, 3):
        _set(net.dense.weight, DENSE_WEIGHTS[step])  # what the optimizer step left
        _set(net.bn.moving_mean, MOVING_MEANS[step])
        hook.after_step(RunState(4, 1, 0, 2, overflow=False))
        d = decays[step - 1]
        want_dense = d * want_dense + (1 - d) * np.array(DENSE_WEIGHTS[step])
        want_mean = d * want_mean + (1 - d) * np.array(MOVING_MEANS[step])
        got = {p.name: p.asnumpy().astype(np.float64) for p in average.averages}
        # float32 a + (1 - d)(p - a): d rounded once, 1 - d, the difference (<= 2M), the product and
        # the sum each add at most u x 2M (M = 10, the largest value), and the decay < 1 damps
        # earlier errors: |error| <= 5 u x 2M x step.
        tolerance = 5 * U * 2 * 10 * step
        np.testing.assert_allclose(got["ema.network.dense.weight"], want_dense, rtol=0, atol=tolerance)
        np.testing.assert_allclose(got["ema.network.bn.moving_mean"], want_mean, rtol=0, atol=tolerance)
        for name, value in others.items():  # weights that did not move: their average stays exact
            np.testing.assert_array_equal(got["ema." + name], value, err_msg=name)
        assert average.update_count() == step
    # A step skipped for non-finite gradients (the weights did not move) is not averaged in.
    before = {p.name: p.asnumpy().copy() for p in average.averages}
    _set(net.dense.weight, [[100.0, 100.0], [100.0, 100.0]])
    hook.after_step(RunState(4, 1, 0, 2, overflow=True))
    assert average.update_count() == 3
    for p in average.averages:
        np.testing.assert_array_equal(p.asnumpy(), before[p.name])


def test_a_resume_point_restores_the_whole_average_or_is_refused():
    net = _WithLoss().network
    average = WeightAverage(net, decay=0.9, warmup_steps=2)
    saved = {
        e["name"]: ms.Parameter(ms.Tensor(e["data"].asnumpy() + np.float32(1.5)), name=e["name"])
        for e in average.checkpoint_parameters()
        if e["name"] != "ema.updates"
    }
    saved["ema.updates"] = ms.Parameter(ms.Tensor(np.array([41], np.int32)), name="ema.updates")
    assert (
        average.state_in({"network.dense.weight": net.dense.weight}, "old.ckpt") == {}
    )  # none: start afresh
    partial = {k: v for k, v in saved.items() if k != "ema.network.bn.moving_variance"}
    with pytest.raises(
        CheckpointError,
        match=r"^new\.ckpt holds an incomplete EMA state \(1 missing, e\.g\. "
        r"ema\.network\.bn\.moving_variance\); it cannot be resumed from$",
    ):
        average.state_in(partial, "new.ckpt")
    average.load_state(average.state_in(saved, "new.ckpt"))
    assert average.update_count() == 41
    for p in average.averages:
        np.testing.assert_array_equal(p.asnumpy(), saved[p.name].asnumpy())


def test_ema_options_are_checked():
    with pytest.raises(ConfigError, match=r"^--ema_decay: expected in \[0, 1\), got 1\.0$"):
        make_config("--ema_decay=1")
    with pytest.raises(ConfigError, match=r"^--ema_warmup_steps: expected >= 0 \(0 = no warm-up\), got -1$"):
        make_config("--ema_warmup_steps=-1")


@pytest.fixture(scope="module")
def ema_checkpoint(tmp_path_factory):
    """A TINY checkpoint whose trained weights (A) and EMA weights (B = A + 0.25) differ, with
    optimizer state beside them as training writes it."""
    from nasfpn.inference.build import build_inference_network

    net = build_inference_network(make_config(*TINY))
    trained = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    entries = [{"name": name, "data": ms.Tensor(value)} for name, value in trained.items()]
    entries += [
        {"name": "moments." + name, "data": ms.Tensor(np.zeros_like(value))}
        for name, value in trained.items()
    ]
    entries += [
        {"name": "ema." + name, "data": ms.Tensor(value + np.float32(0.25))}
        for name, value in trained.items()
    ]
    entries += [
        {"name": "ema.updates", "data": ms.Tensor(np.array([7], np.int32))},
        {"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))},
    ]
    path = tmp_path_factory.mktemp("ema") / "with_ema.ckpt"
    ms.save_checkpoint(entries, str(path))
    return str(path), trained, entries


def _values(net):
    return {p.name: p.asnumpy() for p in net.get_parameters()}


def test_a_checkpoint_with_ema_loads_its_average_unless_asked_not_to(ema_checkpoint, tmp_path, caplog):
    from nasfpn.inference.build import build_inference_network

    path, trained, entries = ema_checkpoint
    # eval.py, infer.py and export.py all build their network from a checkpoint with this call
    with caplog.at_level(logging.INFO, logger="nasfpn"):
        net = build_inference_network(make_config(*TINY), path)  # use_ema: true by default
    assert f"{path}: loading its EMA weights (ema.*)" in caplog.text
    for name, value in _values(net).items():
        np.testing.assert_array_equal(value, trained[name] + np.float32(0.25), err_msg=name)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nasfpn"):
        load_checkpoint_into(net, path, use_ema=False)  # over the averages it holds now
    assert f"{path} holds EMA weights (ema.*); loading its trained weights instead" in caplog.text
    for name, value in _values(net).items():
        np.testing.assert_array_equal(value, trained[name], err_msg=name)
    # Strict from the average too: the file's plain weights cannot stand in for a missing average.
    dropped = "ema.network.head.multi_cls_layers.4.feats.2.weight"
    incomplete = str(tmp_path / "incomplete.ckpt")
    ms.save_checkpoint([e for e in entries if e["name"] != dropped], incomplete)
    with pytest.raises(
        CheckpointError,
        match=rf"^{incomplete} \(its EMA weights, ema\.\*\) does not fit "
        r"the network: 1 missing: network\.head\.multi_cls_layers\.4"
        r"\.feats\.2\.weight\. ",
    ):
        load_checkpoint_into(net, incomplete, use_ema=True)
    for name, value in _values(net).items():  # nothing was assigned
        np.testing.assert_array_equal(value, trained[name], err_msg=name)
    # ... and without use_ema the same file loads its trained weights, the EMA entries ignored
    ignored = load_checkpoint_into(net, incomplete)
    assert set(ignored) == {e["name"] for e in entries if e["name"] != dropped} - set(trained)
