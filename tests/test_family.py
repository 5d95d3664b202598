"""The paper's family: the pyramid as data (spec files, validation, the release's stage built from a
spec), the authors' reference's options (sum-only, swish / ReLU6, DropBlock, separable convs) and
anytime exits (deep supervision, exit_stage)."""

import json

import mindspore as ms
import numpy as np
import pytest
import yaml
from numpy.lib.stride_tricks import sliding_window_view

from nasfpn.config.pyramid import (
    RELEASE_STAGE,
    PyramidSpecError,
    load_pyramid_spec,
    spec_from_plain,
    spec_to_plain,
    stage_wiring,
)
from tests.conftest import TINY, make_config
from tests.helpers.modes import switch_mode
from tests.test_golden_network import (
    NECK_EPS,
    RELEASE_BN_MOMENTUM,
    assert_close,
    batch_norm,
    randomize,
    relu,
    resize_to,
    sum_merge,
    tensor,
)

# ---- the pyramid as data --------------------------------------------------------------------------


def write_spec(tmp_path, cells, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"cells": cells}, sort_keys=False))
    return str(path)


def release_cells():
    return spec_to_plain(RELEASE_STAGE)


def test_the_release_stage_round_trips_through_a_yaml_file(tmp_path):
    path = write_spec(tmp_path, release_cells())
    assert load_pyramid_spec(path) == RELEASE_STAGE
    # the file a user starts from is the release's stage
    assert load_pyramid_spec("configs/pyramid_release.yaml") == RELEASE_STAGE


def _edited(edit):
    cells = release_cells()
    edit(cells)
    return cells


BAD_SPECS = [
    # (edit of the release's cells, what the one-line error says)
    (lambda c: c[1].update(inputs=["p4_9", "p4"]), r"cell 1 \(p4_2\): input 'p4_9' is not made before it"),
    (lambda c: c[2].update(is_output=False), r"no output cell of level 3"),
    (lambda c: c[4].update(is_output=True), r"two outputs of level 5 \(p5_tmp, p5_out\)"),
    (lambda c: c[0].update(level=8), r"cell 0 \(p4_1\): level must be one of \[3, 4, 5, 6, 7\], got 8"),
    (lambda c: c[0].update(combine="max"), r"cell 0 \(p4_1\): combine must be one of \['sum', 'attention'\]"),
    (lambda c: c[0].update(name="p4"), r"cell 0 \(p4\): the name 'p4' is already a node of the stage"),
    (lambda c: c[0].update(inputs=["p6"]), r"cell 0 \(p4_1\): expected two inputs, got \['p6'\]"),
    (lambda c: c[0].update(output_conv="yes"), r"cell 0: output_conv must be true or false, got 'yes'"),
    (lambda c: c[0].update(colour="red"), r"cell 0: unknown keys \['colour'\]"),
    (lambda c: c[3].pop("level"), r"cell 3: missing keys \['level'\]"),
]


@pytest.mark.parametrize("edit, message", BAD_SPECS)
def test_a_spec_that_does_not_describe_a_stage_is_one_line_naming_the_file_and_cell(tmp_path, edit, message):
    path = write_spec(tmp_path, _edited(edit))
    with pytest.raises(PyramidSpecError, match=message) as info:
        load_pyramid_spec(path)
    assert str(info.value).startswith(f"--fpn_spec: {path}: ") and "\n" not in str(info.value)


def test_spec_files_that_are_not_specs(tmp_path):
    with pytest.raises(PyramidSpecError, match=r"no such file"):
        load_pyramid_spec(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(PyramidSpecError, match=r"expected a mapping with a 'cells' list"):
        load_pyramid_spec(str(tmp_path / "list.yaml"))


def test_a_smaller_stage_wires_its_own_outputs():
    """Five cells, one per level, each summing its level with P3's neighbour: outputs in level order."""
    cells = [
        {"name": f"o{lvl}", "combine": "sum", "inputs": [f"p{lvl}", "p3"], "level": lvl, "output_conv": False,
         "is_output": True}
        for lvl in (7, 6, 5, 4, 3)
    ]  # fmt: skip
    wiring = stage_wiring(spec_from_plain(cells, "inline"))
    assert wiring.inputs == ((4, 0), (3, 0), (2, 0), (1, 0), (0, 0))
    assert wiring.outputs == (9, 8, 7, 6, 5)  # o3 is the last cell made


@pytest.fixture(scope="module")
def graph_mode(request):
    switch_mode(request, ms.GRAPH_MODE)


def _forward(cfg, images, seed=3):
    from nasfpn.inference.build import build_inference_network

    ms.set_seed(seed)
    np.random.seed(seed)
    net = build_inference_network(cfg)
    return net, [o.asnumpy() for o in net(images)]


@pytest.mark.slow
def test_a_spec_file_of_the_release_stage_builds_the_same_network_bit_for_bit(tmp_path, graph_mode):
    """Same seed, same names, same outputs to the bit: the spec path is the wiring, not a copy."""
    path = write_spec(tmp_path, release_cells())
    images = ms.Tensor(np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32))
    default, ours = _forward(make_config(*TINY, "--fpn_stages=2"), images)
    from_file, theirs = _forward(make_config(*TINY, "--fpn_stages=2", f"--fpn_spec={path}"), images)
    assert [p.name for p in default.get_parameters()] == [p.name for p in from_file.get_parameters()]
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b)


def test_sum_only_keeps_the_parameters_and_sums_every_cell():
    from nasfpn.model import build_detector
    from nasfpn.model.merge_cells import GlobalPoolingCell, SumCell

    release = build_detector(make_config(*TINY))
    sum_only = build_detector(make_config(*TINY, "--fpn_combine=sum"))
    shapes = [(p.name, p.shape) for p in release.get_parameters()]
    assert shapes == [(p.name, p.shape) for p in sum_only.get_parameters()]
    kinds = [type(c) for c in sum_only.neck.fpn_stages[0]]
    assert kinds == [SumCell] * 9
    assert [type(c) for c in release.neck.fpn_stages[0]].count(GlobalPoolingCell) == 4


# ---- options of the cells: separable convs, activations, DropBlock (numpy references) ------------


def depthwise_conv(x, w, pad):
    """Depthwise cross-correlation: channel c of x with filter w[c, 0] (w: (C, 1, kh, kw))."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(xp, w.shape[2:], axis=(2, 3))  # (N, C, H, W, kh, kw)
    return np.einsum("nchwij,cij->nchw", windows, w[:, 0])


def pointwise_conv(x, w):
    return np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])


def swish(x):
    return x / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def pynative(request):
    switch_mode(request, ms.PYNATIVE_MODE)


@pytest.mark.parametrize("activation, reference", [("relu", relu), ("swish", swish), ("relu6", None)])
def test_separable_merge_cell_matches_numpy(pynative, activation, reference):
    """SUM(P4 upsampled, P3) -> activation -> depthwise 3x3 -> pointwise 1x1 -> BN, against float64 numpy
    (the tolerance is the golden network's, derived in tests/test_golden_network.py)."""
    from nasfpn.model.merge_cells import SumCell

    reference = reference or (lambda x: np.clip(x, 0, 6))
    channels = 8
    cell = SumCell(4, 3, 3, channels, True, RELEASE_BN_MOMENTUM, activation=activation, separable=True)
    p = randomize(cell, seed=11)
    assert sorted(p) == [
        "out_conv.features.1.depthwise.weight",
        "out_conv.features.1.pointwise.weight",
        "out_conv.features.2.beta",
        "out_conv.features.2.gamma",
        "out_conv.features.2.moving_mean",
        "out_conv.features.2.moving_variance",
    ]
    rng = np.random.default_rng(5)
    a = rng.normal(size=(2, channels, 8, 8))
    b = rng.normal(2.0, 3.0, size=(2, channels, 16, 16))  # large values: relu6 clips some
    x = reference(sum_merge(resize_to(a, (16, 16)), b))
    x = depthwise_conv(x, p["out_conv.features.1.depthwise.weight"], pad=1)
    x = pointwise_conv(x, p["out_conv.features.1.pointwise.weight"])
    ref = batch_norm(x, p, "out_conv.features.2", NECK_EPS)
    assert_close(cell(tensor(a), tensor(b)).asnumpy(), ref, f"separable {activation} cell")


def test_dropblock_drops_whole_blocks_and_rescales_what_it_keeps(pynative):
    from nasfpn.model.merge_cells import DropBlock

    drop = DropBlock(keep_prob=0.8, block_size=3)
    x = np.full((4, 16, 32, 32), 2.0, np.float32)
    drop.set_train(False)
    assert np.array_equal(drop(tensor(x)).asnumpy(), x)  # inference: the identity
    drop.set_train(True)
    ms.set_seed(0)
    y = drop(tensor(x)).asnumpy()
    kept = y != 0
    # every kept value is x * (all / kept), the same factor for the whole tensor
    factor = kept.size / kept.sum()
    assert np.allclose(y[kept], 2.0 * factor, rtol=1e-6)
    # the dropped set is a union of 3x3 squares: eroding then dilating it by 3x3 gives it back
    # (a block at the border is cut by the edge: outside the map counts as dropped for the erosion)
    dropped = np.pad(~kept, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=True)
    eroded = sliding_window_view(dropped, (3, 3), axis=(2, 3)).all(axis=(4, 5))
    opened = np.pad(eroded, ((0, 0), (0, 0), (1, 1), (1, 1)))
    opened = sliding_window_view(opened, (3, 3), axis=(2, 3)).any(axis=(4, 5))
    assert np.array_equal(opened, ~kept)
    # about 1 - keep_prob dropped: 65536 values in blocks of 9 whose centres are drawn independently;
    # overlapping blocks make the dropped fraction 1 - (1 - gamma)^9 per pixel with gamma from
    # keep_prob (~0.2 * 1.14 / 9 -> 0.197 expected); 5 standard deviations of the count of ~7300
    # centres allow +-0.026.
    assert abs((~kept).mean() - 0.197) < 0.026


# ---- anytime exits ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_deep_supervised_loss_is_the_mean_of_the_numpy_loss_after_each_stage(pynative):
    """Deep supervision over 3 stages = the mean of the numpy focal + smooth-L1 loss (tests/test_loss.py)
    of the outputs of the networks that stop after 1, 2 and 3 stages, holding the same parameters
    (exit_stage: an independent path through the neck)."""
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.ops.boxes import Anchors, AnchorMatcher, AnchorSpec
    from tests.test_loss import numpy_loss

    args = (*TINY, "--fpn_stages=3", "--num_classes=3")
    cfg = make_config(*args)
    matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)))
    loc, label, num = matcher.encode(
        np.array([[0.2, 0.2, 0.6, 0.7], [0.5, 0.1, 0.9, 0.4]], np.float32), [1, 2]
    )
    images = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 128, 128)).astype(np.float32))
    gt_loc, gt_label = np.stack([loc, loc]), np.stack([label, label])
    num_match = np.stack([num, num]).astype(np.int32)
    ms.set_seed(1)
    supervised = build_detector(cfg)
    deep = RetinaNetWithLoss(supervised, cfg.num_classes, cfg.gamma, cfg.alpha, deep_supervision=True)
    deep.set_train(False)  # BN on moving statistics: every forward sees the same network
    weights = {p.name.removeprefix("network."): p.asnumpy() for p in supervised.get_parameters()}
    per_exit = []
    for k in (1, 2, 3):
        exit_net = build_detector(make_config(*args, f"--exit_stage={k}"))
        for p in exit_net.get_parameters():
            p.set_data(ms.Tensor(weights[p.name]))
        exit_net.set_train(False)
        pred_loc, logits = (o.asnumpy().astype(np.float64) for o in exit_net(images))
        per_exit.append(numpy_loss(pred_loc, logits, gt_loc, gt_label, num_match, cfg.gamma, cfg.alpha))
    assert int(num[0]) > 0 and len({round(float(v), 6) for v in per_exit}) == 3  # distinct exits
    loss = deep(images, ms.Tensor(gt_loc), ms.Tensor(gt_label), ms.Tensor(num_match))
    # float32 graph against float64 numpy: the tolerance of tests/test_network.py's loss test
    np.testing.assert_allclose(loss.asnumpy(), np.mean(per_exit), rtol=1e-4)


def test_an_exit_of_a_model_without_deep_supervision_is_refused_before_work():
    from nasfpn.config.flat import ConfigError
    from nasfpn.inference.build import build_inference_network

    with pytest.raises(ConfigError, match=r"--exit_stage=1: the model was not trained with deep_supervision"):
        build_inference_network(make_config(*TINY, "--fpn_stages=2", "--exit_stage=1"))
    with pytest.raises(
        ConfigError, match=r"--exit_stage: expected 0 \(all stages\) to fpn_stages \(2\), got 3"
    ):
        make_config(*TINY, "--fpn_stages=2", "--exit_stage=3")


def test_a_description_without_the_family_options_reads_as_the_release_network():
    """Files written before these options (format 1 without them) were built with the release's values."""
    from nasfpn.model_files.description import FAMILY_DEFAULTS, ModelDescription

    cfg = make_config(*TINY)
    text = json.loads(ModelDescription.of_config(cfg).to_json())
    for key in FAMILY_DEFAULTS:
        del text["options"][key]
    read = ModelDescription.from_json(json.dumps(text), "old.ckpt")
    assert {k: read.options[k] for k in FAMILY_DEFAULTS} == FAMILY_DEFAULTS


def test_a_description_carries_the_spec_cells_so_the_file_needs_no_spec_option(tmp_path):
    from nasfpn.model_files.description import ModelDescription, apply_description

    cells = release_cells()
    cells[0]["combine"] = "sum"
    path = write_spec(tmp_path, cells)
    described = ModelDescription.of_config(make_config(*TINY, f"--fpn_spec={path}"))
    assert described.options["fpn_spec"] == cells
    cfg, _ = apply_description(make_config(*TINY), ModelDescription.from_json(described.to_json(), "m"), "m")
    assert cfg.fpn_spec == cells
    with pytest.raises(PyramidSpecError):  # what the file holds is checked like a spec file
        spec_from_plain(_edited(lambda c: c[2].update(is_output=False)), "m")
