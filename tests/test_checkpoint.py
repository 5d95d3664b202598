"""Checkpoint files (nasfpn/model_files/checkpoint.py): strict loading of release-style checkpoints into the full
network (docs/architecture.md#the-checkpoints-names), then, on a two-layer cell, the selection and
its messages, dtype widening, ignored names, atomic saving and the manifest helpers."""

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest
from mindspore.nn.utils import no_init_parameters

from nasfpn.model_files.checkpoint import (
    CheckpointError,
    is_optimizer_state,
    load_checkpoint_into,
    network_params_from,
    read_checkpoint,
    save_checkpoint_atomic,
)
from nasfpn.core.files import ChecksumError, sha256_of
from nasfpn.inference.build import build_inference_network
from tests.conftest import make_config
from tests.helpers.manifest import manifest_checkpoint_params, read_manifest


# Strict loading of release-style checkpoints (docs/architecture.md#the-checkpoints-names).


@pytest.fixture(scope="module")
def net():
    """The release network, uninitialised: every test using it loads (or sets) all its values
    before reading any (the first loads the release-style file)."""
    with no_init_parameters():
        return build_inference_network(make_config())


def _values(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


@pytest.mark.slow  # builds the 640x640 network
def test_release_style_checkpoint_loads_and_optimizer_state_is_ignored(net, release_ckpt):
    stored = ms.load_checkpoint(release_ckpt)
    assert "moments.network.backbone.conv1.weight" in stored and "global_step" in stored
    ignored = load_checkpoint_into(net, release_ckpt)
    assert set(ignored) == {n for n in stored if not n.startswith("network.")}
    assert len(ignored) == 371 + 3
    loaded = _values(net)
    for name in (
        "network.backbone.conv1.weight",
        "network.neck.fpn_stages.6.8.out_conv.features.2.moving_variance",
        "network.head.multi_cls_layers.4.feats.8.weight",
    ):
        np.testing.assert_array_equal(loaded[name], stored[name].asnumpy())


def _rewrite(src, dst, drop=(), reshape=()):
    params = []
    for name, value in ms.load_checkpoint(src).items():
        if name in drop:
            continue
        data = value.asnumpy()
        if name in reshape:
            data = np.zeros(reshape[name], data.dtype)
        params.append({"name": name, "data": ms.Tensor(data)})
    ms.save_checkpoint(params, str(dst))
    return str(dst)


@pytest.mark.slow  # builds the 640x640 network
def test_missing_or_misshapen_parameters_are_refused_without_partial_load(net, release_ckpt, tmp_path):
    missing = _rewrite(
        release_ckpt, tmp_path / "missing.ckpt", drop={"network.neck.lateral_convs.1.conv.weight"}
    )
    wrong = _rewrite(
        release_ckpt,
        tmp_path / "wrong.ckpt",
        reshape={"network.head.multi_loc_layers.2.feats.8.weight": (9, 256, 3, 3)},
    )
    # Put the network into a known state different from the file's.
    other = manifest_checkpoint_params(
        [(p.name, p.shape, True) for p in net.get_parameters()], seed=5, with_optimizer_state=False
    )
    ms.load_param_into_net(net, {d["name"]: ms.Parameter(d["data"], name=d["name"]) for d in other})
    before = _values(net)
    with pytest.raises(CheckpointError, match=r"1 missing: network.neck.lateral_convs.1.conv.weight"):
        load_checkpoint_into(net, missing)
    with pytest.raises(
        CheckpointError,
        match=r"1 with the wrong shape: network.head.multi_loc_layers.2"
        r".feats.8.weight \[9, 256, 3, 3\] \(expected \[36, 256, 3, 3\]\)",
    ):
        load_checkpoint_into(net, wrong)
    after = _values(net)
    assert all(np.array_equal(before[k], after[k]) for k in before), "a refused file changed weights"


@pytest.mark.slow  # builds the 640x640 network
def test_unreadable_and_absent_files(net, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint_into(net, str(tmp_path / "nope.ckpt"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.ckpt: not a readable MindSpore checkpoint"):
        load_checkpoint_into(net, str(junk))


@pytest.mark.slow  # builds the 640x640 network
def test_sha256_is_checked_before_loading(net, release_ckpt):
    good = sha256_of(release_ckpt)
    load_checkpoint_into(net, release_ckpt, expected_sha256=good)
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}, got {good}"):
        load_checkpoint_into(net, release_ckpt, expected_sha256="0" * 64)


@pytest.mark.slow  # builds the 640x640 network
def test_atomic_save_round_trip(tmp_path, net, release_ckpt):
    load_checkpoint_into(net, release_ckpt)
    path = save_checkpoint_atomic(net, str(tmp_path / "out" / "saved.ckpt"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["saved.ckpt"]
    assert set(ms.load_checkpoint(path)) == {p.name for p in net.get_parameters()}


@pytest.fixture(scope="module")
def two_stage_ckpt(tmp_path_factory):
    """A checkpoint of a 2-stage tiny network (as its training would write: with optimizer state)."""
    from tests.conftest import TINY

    net = build_inference_network(make_config(*TINY, "--fpn_stages=2"))
    params = [{"name": p.name, "data": p.data} for p in net.get_parameters()]
    params += [
        {"name": "moments." + p.name, "data": ms.Tensor(np.zeros(p.shape, np.float32))}
        for p in net.get_parameters()
    ]
    path = str(tmp_path_factory.mktemp("two") / "two_stages.ckpt")
    ms.save_checkpoint(params, path)
    return path


def test_parameters_the_network_does_not_have_are_refused(two_stage_ckpt):
    from tests.conftest import TINY

    net = build_inference_network(make_config(*TINY))  # fpn_stages=1
    before = _values(net)
    extra = sorted(
        n for n in ms.load_checkpoint(two_stage_ckpt) if n.startswith("network.neck.fpn_stages.1.")
    )
    assert len(extra) > 20
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint_into(net, two_stage_ckpt)
    message = str(raised.value)
    assert message.startswith(
        f"{two_stage_ckpt} does not fit the network: {len(extra)} not in the "
        f"network: {', '.join(extra[:8])} ... (+{len(extra) - 8} more). Check "
    )
    assert "fpn_stages" in message and "backbone_depth" in message
    assert "moments." not in message  # optimizer state is ignored, not reported
    after = _values(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # The same file fits the network it was trained as.
    load_checkpoint_into(build_inference_network(make_config(*TINY, "--fpn_stages=2")), two_stage_ckpt)


def test_filter_weight_skips_the_class_head_both_ways(tmp_path):
    from nasfpn.training.trainer import CLASS_HEAD
    from tests.conftest import TINY

    source = build_inference_network(make_config(*TINY, "--num_classes=81"))
    path = str(tmp_path / "coco_classes.ckpt")
    ms.save_checkpoint(source, path)
    target = build_inference_network(make_config(*TINY, "--num_classes=4"))
    with pytest.raises(CheckpointError, match="with the wrong shape: network.head.multi_cls_layers"):
        load_checkpoint_into(target, path)
    ignored = load_checkpoint_into(target, path, skip=(CLASS_HEAD,))
    assert ignored and all(n.startswith(CLASS_HEAD) for n in ignored)
    loaded, stored = _values(target), ms.load_checkpoint(path)
    np.testing.assert_array_equal(
        loaded["network.backbone.conv1.weight"], stored["network.backbone.conv1.weight"].asnumpy()
    )


# nasfpn/model_files/checkpoint.py on a two-layer cell: strict selection and its messages, dtype widening, the
# ignored-name list, atomic saving, and the manifest helpers (fast: no network).


class Small(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(3, 4)
        self.fc2 = nn.Dense(4, 2)

    def construct(self, x):
        return self.fc2(self.fc1(x))


SHAPES = {"fc1.weight": (4, 3), "fc1.bias": (4,), "fc2.weight": (2, 4), "fc2.bias": (2,)}


def values(seed, dtype=np.float32, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=s).astype(dtype) for n, s in shapes.items()}


def write(path, named_arrays):
    ms.save_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in named_arrays.items()], str(path))
    return str(path)


def weights(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def test_optimizer_state_names():
    for name in (
        "learning_rate",
        "momentum",
        "global_step",
        "moments.fc1.weight",
        "accum.x",
        "scale_sense",
        "current_iterator_step",
        "epoch_num",
        "loss_scale",
    ):
        assert is_optimizer_state(name), name
    for name in ("fc1.weight", "network.momentum_bn.gamma", "learning_rate_extra", "xmoments.a"):
        assert not is_optimizer_state(name), name


def test_load_assigns_values_and_returns_the_sorted_ignored_names(tmp_path):
    stored = values(1)
    extra = {
        "moments.fc1.weight": np.zeros((4, 3), np.float32),
        "global_step": np.array([7], np.int32),
        "learning_rate": np.ones(1, np.float32),
    }
    path = write(tmp_path / "a.ckpt", {**stored, **extra})
    net = Small()
    ignored = load_checkpoint_into(net, path)
    assert ignored == ["global_step", "learning_rate", "moments.fc1.weight"]  # optimizer state only
    for name, value in weights(net).items():
        np.testing.assert_array_equal(value, stored[name])


def test_half_and_double_precision_files_load_as_float32(tmp_path):
    for dtype in (np.float16, np.float64):
        stored = values(2, dtype)
        net = Small()
        load_checkpoint_into(net, write(tmp_path / f"{np.dtype(dtype).name}.ckpt", stored))
        for p in net.get_parameters():
            assert p.dtype == ms.float32, (dtype, p.name)
            np.testing.assert_array_equal(p.asnumpy(), stored[p.name].astype(np.float32))


def test_refusals_name_every_problem_and_change_nothing(tmp_path):
    stored = values(3)
    del stored["fc1.bias"]
    stored["fc2.weight"] = np.zeros((3, 4), np.float32)
    path = write(tmp_path / "bad.ckpt", stored)
    net = Small()
    before = weights(net)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_into(net, path)
    assert str(info.value) == (
        f"{path} does not fit the network: 1 missing: fc1.bias; 1 with the "
        "wrong shape: fc2.weight [3, 4] (expected [2, 4]). Check img_shape/"
        "num_classes/backbone_depth/fpn_stages/fpn_channels/head_convs/cls_prior_probability against the checkpoint's "
        "training config."
    )
    assert all(np.array_equal(before[k], v) for k, v in weights(net).items())


def test_only_missing_or_only_wrong_shape(tmp_path):
    only_missing = values(4)
    del only_missing["fc2.bias"]
    with pytest.raises(CheckpointError, match=r"network: 1 missing: fc2.bias\. Check"):
        load_checkpoint_into(Small(), write(tmp_path / "m.ckpt", only_missing))
    only_wrong = values(4)
    only_wrong["fc1.bias"] = np.zeros(5, np.float32)
    with pytest.raises(
        CheckpointError, match=r"network: 1 with the wrong shape: fc1.bias \[5\] \(expected \[4\]\)\. Check"
    ):
        load_checkpoint_into(Small(), write(tmp_path / "w.ckpt", only_wrong))


def test_long_lists_are_cut_after_eight_names():
    net = Small()
    with pytest.raises(CheckpointError, match="4 missing: fc1.bias, fc1.weight, fc2.bias, fc2.weight\\."):
        network_params_from({}, net, "empty")
    many = {f"p{i:02d}": object() for i in range(11)}

    class Wide(nn.Cell):
        def __init__(self):
            super().__init__()
            for name in many:
                setattr(self, name, ms.Parameter(ms.Tensor(np.zeros(1, np.float32)), name=name))

    with pytest.raises(CheckpointError) as info:
        network_params_from({}, Wide(), "wide.ckpt")
    assert "11 missing: p00, p01, p02, p03, p04, p05, p06, p07 ... (+3 more)." in str(info.value)
    assert str(info.value).startswith("wide.ckpt does not fit")


def test_skip_prefixes_may_be_absent(tmp_path):
    stored = values(5)
    del stored["fc2.weight"], stored["fc2.bias"]
    net = Small()
    fc2_before = weights(net)["fc2.weight"]
    assert load_checkpoint_into(net, write(tmp_path / "s.ckpt", stored), skip=("fc2.",)) == []
    after = weights(net)
    np.testing.assert_array_equal(after["fc1.weight"], stored["fc1.weight"])
    np.testing.assert_array_equal(after["fc2.weight"], fc2_before)
    selected = network_params_from(values(5), Small(), skip=("fc1.",))
    assert sorted(selected) == ["fc2.bias", "fc2.weight"]


def test_sha256_is_checked_before_reading(tmp_path):
    path = write(tmp_path / "h.ckpt", values(6))
    load_checkpoint_into(Small(), path, expected_sha256=sha256_of(path).upper())
    with pytest.raises(ChecksumError, match="expected " + "1" * 64):
        load_checkpoint_into(Small(), path, expected_sha256="1" * 64)


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"^checkpoint not found: .*nothing\.ckpt$"):
        read_checkpoint(str(tmp_path / "nothing.ckpt"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00garbage\nsecond line")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(str(junk))
    message = str(info.value)
    assert message.startswith(f"{junk}: not a readable MindSpore checkpoint (") and "\n" not in message
    assert set(read_checkpoint(write(tmp_path / "ok.ckpt", values(7)))) == set(SHAPES)


def test_atomic_save_appends_the_extension_and_leaves_no_temporary(tmp_path):
    net = Small()
    path = save_checkpoint_atomic(net, str(tmp_path / "out" / "model"), append_dict={"epoch_num": 3})
    assert path == str(tmp_path / "out" / "model.ckpt")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.ckpt"]
    loaded = ms.load_checkpoint(path)
    assert int(loaded["epoch_num"].asnumpy()) == 3
    np.testing.assert_array_equal(loaded["fc1.weight"].asnumpy(), weights(net)["fc1.weight"])
    assert save_checkpoint_atomic(net, str(tmp_path / "x.ckpt")) == str(tmp_path / "x.ckpt")


def test_manifest_params_have_sane_values_and_optimizer_state():
    rows = [
        ("a.conv.weight", (8, 3, 3, 3), True),
        ("a.bn.gamma", (400,), True),
        ("a.bn.beta", (400,), True),
        ("a.bn.moving_mean", (400,), False),
        ("a.bn.moving_variance", (400,), False),
    ]
    params = {d["name"]: d["data"].asnumpy() for d in manifest_checkpoint_params(rows, seed=1)}
    assert set(params) == {r[0] for r in rows} | {
        "moments.a.conv.weight",
        "moments.a.bn.gamma",
        "moments.a.bn.beta",
        "learning_rate",
        "momentum",
        "global_step",
    }
    for name, shape, _ in rows:
        assert params[name].shape == shape and params[name].dtype == np.float32
    for name in ("a.bn.gamma", "a.bn.moving_variance"):
        assert 0.5 <= params[name].min() and params[name].max() <= 1.5 and params[name].std() > 0.2
    for name in ("a.bn.beta", "a.bn.moving_mean"):
        assert abs(params[name].mean()) < 0.03 and 0.07 < params[name].std() < 0.13
    assert 0.01 < params["a.conv.weight"].std() < 0.03
    assert not params["moments.a.conv.weight"].any()
    assert float(params["learning_rate"]) == pytest.approx(0.1)
    assert float(params["momentum"]) == pytest.approx(0.9)
    assert params["global_step"].tolist() == [1000] and params["global_step"].dtype == np.int32
    plain = manifest_checkpoint_params(rows, seed=1, with_optimizer_state=False)
    assert [d["name"] for d in plain] == [r[0] for r in rows]
    np.testing.assert_array_equal(plain[0]["data"].asnumpy(), params["a.conv.weight"])
    other = manifest_checkpoint_params(rows, seed=2, with_optimizer_state=False)
    assert not np.array_equal(other[0]["data"].asnumpy(), params["a.conv.weight"])


def test_read_manifest(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text(
        "name\tshape\trequires_grad\nw\t[2, 3]\tTrue\n\nscalar\t[]\tFalse\nb\t[4]\t True \n", encoding="utf-8"
    )
    assert read_manifest(str(path)) == [("w", (2, 3), True), ("scalar", (), False), ("b", (4,), True)]
    bad = tmp_path / "bad.tsv"
    bad.write_text("shape\tname\nw\t[1]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv: expected a 'name<TAB>shape<TAB>requires_grad' header"):
        read_manifest(str(bad))


class WithCounter(nn.Cell):
    """A float weight and an int32 counter (kept as int32: only half/double floats are widened)."""

    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.zeros(2, np.float32)), name="w")
        self.count = ms.Parameter(ms.Tensor(np.array([0], np.int32)), name="count", requires_grad=False)


def test_integer_parameters_load_unconverted(tmp_path):
    path = write(tmp_path / "c.ckpt", {"w": np.ones(2, np.float32), "count": np.array([41], np.int32)})
    net = WithCounter()
    assert load_checkpoint_into(net, path) == []
    assert net.count.dtype == ms.int32 and net.count.asnumpy().tolist() == [41]


def test_exactly_eight_names_are_listed_without_a_tail():
    class Eight(nn.Cell):
        def __init__(self):
            super().__init__()
            for i in range(8):
                setattr(self, f"q{i}", ms.Parameter(ms.Tensor(np.zeros(1, np.float32)), name=f"q{i}"))

    with pytest.raises(CheckpointError) as info:
        network_params_from({}, Eight())
    assert str(info.value).startswith(
        "checkpoint does not fit the network: 8 missing: q0, q1, q2, q3, q4, q5, q6, q7. Check"
    )


def test_every_wrong_shape_after_the_first_is_reported():
    stored = {n: ms.Tensor(v) for n, v in values(8).items()}
    stored["fc1.weight"] = ms.Tensor(np.zeros((3, 3), np.float32))
    stored["fc2.weight"] = ms.Tensor(np.zeros((2, 2), np.float32))
    del stored["fc2.bias"]
    with pytest.raises(CheckpointError) as info:
        network_params_from(stored, Small(), "two.ckpt")
    assert (
        "1 missing: fc2.bias; 2 with the wrong shape: fc1.weight [3, 3] (expected [4, 3]), "
        "fc2.weight [2, 2] (expected [2, 4])"
    ) in str(info.value)


def test_unreadable_file_message_carries_mindspores_first_line(tmp_path):
    junk = tmp_path / "junk2.ckpt"
    junk.write_bytes(b"\x00garbage\nsecond line")
    try:
        ms.load_checkpoint(str(junk))
    except Exception as exc:  # what MindSpore itself says about this file
        first_line = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(str(junk))
    assert str(info.value) == f"{junk}: not a readable MindSpore checkpoint ({first_line})"


def test_manifest_params_default_seed_dtypes_and_shapes():
    rows = [("a.w", (3, 2), True), ("a.b", (5,), False)]
    default = manifest_checkpoint_params(rows)
    seeded = manifest_checkpoint_params(rows, seed=0)
    assert [d["name"] for d in default] == [d["name"] for d in seeded]
    for d, s in zip(default, seeded):
        np.testing.assert_array_equal(d["data"].asnumpy(), s["data"].asnumpy())
    by_name = {d["name"]: d["data"].asnumpy() for d in default}
    assert by_name["moments.a.w"].shape == (3, 2) and "moments.a.b" not in by_name
    for name in ("a.w", "a.b", "moments.a.w", "learning_rate", "momentum"):
        assert by_name[name].dtype == np.float32, name
    big = manifest_checkpoint_params([("k.weight", (64, 64), True)], with_optimizer_state=False)
    assert abs(big[0]["data"].asnumpy().mean()) < 0.002


def test_manifest_header_must_be_tab_separated(tmp_path):
    spaced = tmp_path / "spaced.tsv"
    spaced.write_text("name shape\trequires_grad\nw\t[1]\tTrue\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a 'name<TAB>shape<TAB>requires_grad' header"):
        read_manifest(str(spaced))


def test_network_parameters_the_net_lacks_are_refused_unless_skipped(tmp_path):
    """Strict both ways: an extra network parameter is an error (not silently ignored); optimizer
    state is not; a skipped prefix is left out on the checkpoint's side too."""
    stored = {
        **values(8),
        "fc3.weight": np.ones((2, 2), np.float32),
        "fc3.bias": np.ones(2, np.float32),
        "moments.fc1.weight": np.zeros((4, 3), np.float32),
    }
    with pytest.raises(
        CheckpointError,
        match=r"^x\.ckpt does not fit the network: 2 not in the network: "
        r"fc3\.bias, fc3\.weight\. Check img_shape/",
    ):
        network_params_from(stored, Small(), "x.ckpt")
    path = write(tmp_path / "extra.ckpt", stored)
    net = Small()
    before = weights(net)
    with pytest.raises(CheckpointError, match="2 not in the network"):
        load_checkpoint_into(net, path)
    for name, value in weights(net).items():  # nothing assigned
        np.testing.assert_array_equal(value, before[name])
    selected = network_params_from(stored, Small(), skip=("fc3.",))
    assert sorted(selected) == sorted(SHAPES)


def test_non_finite_parameters_counts_inf_and_nan_of_float_parameters_only():
    from nasfpn.model_files.checkpoint import non_finite_parameters

    class Mixed(nn.Cell):
        def __init__(self):
            super().__init__()
            w = np.arange(6, dtype=np.float32).reshape(2, 3)
            w[0, 1], w[1, 2] = np.nan, -np.inf
            self.w = ms.Parameter(ms.Tensor(w), name="w")
            self.ok = ms.Parameter(ms.Tensor(np.ones(4, np.float32)), name="ok")
            self.steps = ms.Parameter(ms.Tensor(np.array([3], np.int32)), name="steps")
            self.half = ms.Parameter(ms.Tensor(np.array([np.inf, 1.0], np.float16)), name="half")

    assert non_finite_parameters(Mixed()) == [("w", 2, 6), ("half", 1, 2)]
    assert non_finite_parameters(Small()) == []
