"""The paper's family: the pyramid as data (spec files, validation, the release's stage built from a
spec), the authors' reference's options (sum-only, swish / ReLU6, DropBlock, separable convs) and
anytime exits (deep supervision, exit_stage)."""

import json
import subprocess
import sys

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


def sections(cfg):
    """What build_detector and the model description are built from."""
    return cfg.model, cfg.anchors


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

    release = build_detector(*sections(make_config(*TINY)))
    sum_only = build_detector(*sections(make_config(*TINY, "--fpn_combine=sum")))
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
    from nasfpn.ops.boxes import Anchors, AnchorMatcher
    from tests.test_loss import numpy_loss

    args = (*TINY, "--fpn_stages=3", "--num_classes=3")
    cfg = make_config(*args)
    matcher = AnchorMatcher(Anchors(cfg.anchors.spec(cfg.model.img_shape)))
    loc, label, num = matcher.encode(
        np.array([[0.2, 0.2, 0.6, 0.7], [0.5, 0.1, 0.9, 0.4]], np.float32), [1, 2]
    )
    images = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 128, 128)).astype(np.float32))
    gt_loc, gt_label = np.stack([loc, loc]), np.stack([label, label])
    num_match = np.stack([num, num]).astype(np.int32)
    ms.set_seed(1)
    supervised = build_detector(cfg.model, cfg.anchors)
    deep = RetinaNetWithLoss(supervised, cfg.num_classes, cfg.gamma, cfg.alpha, deep_supervision=True)
    deep.set_train(False)  # BN on moving statistics: every forward sees the same network
    weights = {p.name.removeprefix("network."): p.asnumpy() for p in supervised.get_parameters()}
    per_exit = []
    for k in (1, 2, 3):
        exit_net = build_detector(*sections(make_config(*args, f"--exit_stage={k}")))
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
    text = json.loads(ModelDescription.of_sections(cfg.model, cfg.anchors).to_json())
    for key in FAMILY_DEFAULTS:
        del text["options"][key]
    read = ModelDescription.from_json(json.dumps(text), "old.ckpt")
    assert {k: read.options[k] for k in FAMILY_DEFAULTS} == FAMILY_DEFAULTS


def test_a_description_carries_the_spec_cells_so_the_file_needs_no_spec_option(tmp_path):
    from nasfpn.model_files.description import ModelDescription, apply_description

    cells = release_cells()
    cells[0]["combine"] = "sum"
    path = write_spec(tmp_path, cells)
    described = ModelDescription.of_sections(*sections(make_config(*TINY, f"--fpn_spec={path}")))
    assert described.options["fpn_spec"] == cells
    cfg, _ = apply_description(make_config(*TINY), ModelDescription.from_json(described.to_json(), "m"), "m")
    assert cfg.fpn_spec == cells
    with pytest.raises(PyramidSpecError):  # what the file holds is checked like a spec file
        spec_from_plain(_edited(lambda c: c[2].update(is_output=False)), "m")


# ---- NAS-FPNLite: the MobileNetV2 backbone and its ImageNet files --------------------------------


def depthwise(x, w, stride):
    """Depthwise 3x3 (pad 1) at `stride`."""
    return depthwise_conv(x, w, pad=1)[:, :, ::stride, ::stride]


def bn(x, p, prefix):
    return batch_norm(x, p, prefix, 1e-5)


def relu6(x):
    return np.clip(x, 0, 6)


def inverted_residual(x, p, prefix, stride, expanded):
    """The paper's block from mindcv's names: [1x1 expand, BN, ReLU6], 3x3 depthwise, BN, ReLU6, 1x1
    linear, BN, plus x when the shape is kept."""
    y, j = x, 0
    if expanded:
        y = relu6(bn(pointwise_conv(y, p[f"{prefix}.layers.0.weight"]), p, f"{prefix}.layers.1"))
        j = 3
    y = relu6(bn(depthwise(y, p[f"{prefix}.layers.{j}.weight"], stride), p, f"{prefix}.layers.{j + 1}"))
    y = bn(pointwise_conv(y, p[f"{prefix}.layers.{j + 3}.weight"]), p, f"{prefix}.layers.{j + 4}")
    return x + y if y.shape == x.shape and stride == 1 else y


def numpy_mobilenet_v2(x, p, width):
    """(C3, C4, C5) of the float64 reference: the stem (3x3 stride 2, pad 1), then the blocks of the
    paper's table 2; taps after the last block at strides 8, 16, 32."""
    from nasfpn.model.mobilenet_v2 import BLOCK_SETTINGS

    stem = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(stem, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    x = relu6(bn(np.tensordot(windows, p["features.0.weight"], axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2),
                 p, "features.1"))  # fmt: skip
    index, reduction, taps = 3, 2, {}
    for t, _, n, s in BLOCK_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            x = inverted_residual(x, p, f"features.{index}", stride, t != 1)
            reduction *= stride
            taps[reduction] = x
            index += 1
    return taps[8], taps[16], taps[32]


def torchvision_names(ours):
    """Our (mindcv's) MobileNetV2 names -> torchvision's, written out from torchvision's module tree:
    features.0 = Conv2dNormActivation(0: conv, 1: BN); block k (features.k, from 1) = conv.0 (the
    expand ConvBNReLU, or the depthwise one in block 1), conv.1 (depthwise ConvBNReLU), conv.2 (linear
    conv), conv.3 (BN); BN tensors weight / bias / running_mean / running_var."""
    bn_names = {
        "gamma": "weight",
        "beta": "bias",
        "moving_mean": "running_mean",
        "moving_variance": "running_var",
    }
    module, _, leaf = ours.rpartition(".")
    leaf = bn_names.get(leaf, leaf)
    parts = module.split(".")
    if parts[:2] == ["features", "0"]:
        return f"features.0.0.{leaf}"
    if parts[:2] == ["features", "1"]:
        return f"features.0.1.{leaf}"
    block, layer = int(parts[1]) - 2, int(parts[3])
    if block == 1:  # no expansion: depthwise, BN, (ReLU6), linear, BN
        sub = {0: "0.0", 1: "0.1", 3: "1", 4: "2"}[layer]
    else:
        sub = {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"}[layer]
    return f"features.{block}.conv.{sub}.{leaf}"


@pytest.fixture(scope="module")
def mobilenet_files(tmp_path_factory):
    """A MobileNetV2 of width 0.5 with random weights, written as a mindcv .ckpt (with the classifier,
    the 1280-channel conv and optimizer state a mindcv checkpoint holds) and a torchvision .safetensors
    (with its BN counters and classifier)."""
    from safetensors.numpy import save_file

    from nasfpn.model.mobilenet_v2 import MobileNetV2

    ms.set_seed(4)
    net = MobileNetV2(0.5)
    values = randomize(net, seed=21)
    folder = tmp_path_factory.mktemp("mobilenet")
    extras = {"features.20.weight": np.zeros((1280, 160, 1, 1)), "classifier.1.weight": np.zeros((1000, 1280)),
              "classifier.1.bias": np.zeros(1000), "moments.features.0.weight": np.zeros((16, 3, 3, 3))}  # fmt: skip
    ckpt = str(folder / "mobilenet_v2_050.ckpt")
    ms.save_checkpoint(
        [{"name": k, "data": ms.Tensor(v.astype(np.float32))} for k, v in {**values, **extras}.items()], ckpt
    )
    tv = {torchvision_names(k): v.astype(np.float32) for k, v in values.items()}
    tv.update(
        {
            n.replace("running_var", "num_batches_tracked"): np.array(5, np.int64)
            for n in tv
            if "running_var" in n
        }
    )
    tv.update({"features.18.0.weight": np.zeros((1280, 160, 1, 1), np.float32), "classifier.1.weight": np.zeros((1000, 1280), np.float32)})  # fmt: skip
    safetensors = str(folder / "mobilenet_v2_050.safetensors")
    save_file(tv, safetensors)
    return values, ckpt, safetensors


@pytest.mark.parametrize("layout", ["mindcv", "torchvision"])
def test_mobilenet_v2_files_of_both_layouts_give_the_numpy_c3_to_c5(pynative, mobilenet_files, layout):
    from nasfpn.model.backbone_files import load_backbone_file_into, read_backbone_file
    from nasfpn.model.mobilenet_v2 import MobileNetV2

    values, ckpt, safetensors = mobilenet_files
    weights = read_backbone_file(ckpt if layout == "mindcv" else safetensors, "mobilenet_v2", 50, 0.5)
    assert weights.layout == layout and "MobileNetV2 width 0.5" in weights.summary()
    assert set(weights.ignored) == (
        {"classifier", "the 1280-channel head conv", "optimizer state"}
        if layout == "mindcv"
        else {"classifier", "the 1280-channel head conv", "BN step counters"}
    )
    backbone = MobileNetV2(0.5)
    assert load_backbone_file_into(backbone, weights) == len(values)
    backbone.set_train(False)
    x = np.random.default_rng(2).normal(size=(1, 3, 64, 64))
    ours = backbone(tensor(x))
    assert backbone.out_channels == (16, 48, 160)
    for got, ref, name in zip(ours, numpy_mobilenet_v2(x, values, 0.5), ("C3", "C4", "C5")):
        assert_close(got.asnumpy(), ref, f"{layout} {name}")


def test_a_mobilenet_file_of_another_width_or_with_a_tensor_missing_is_refused(mobilenet_files, tmp_path):
    from safetensors.numpy import load_file, save_file

    from nasfpn.model.backbone_files import load_backbone_file_into, read_backbone_file
    from nasfpn.model.backbone_weights import BackboneFileError
    from nasfpn.model.mobilenet_v2 import MobileNetV2

    _, ckpt, safetensors = mobilenet_files
    with pytest.raises(BackboneFileError, match=r"holds a MobileNetV2 of width 0.35 or 0.5 \(stem 16 channels\), the "
                       r"network's is 1.0 \(--backbone_width=1.0, stem 32 channels\)"):  # fmt: skip
        read_backbone_file(ckpt, "mobilenet_v2", 50, 1.0)
    tensors = load_file(safetensors)
    del tensors["features.5.conv.1.0.weight"]
    damaged = str(tmp_path / "no_dw.safetensors")
    save_file(tensors, damaged)
    weights = read_backbone_file(damaged, "mobilenet_v2", 50, 0.5)
    backbone = MobileNetV2(0.5)
    before = backbone.features[7].layers[3].weight.asnumpy().copy()
    with pytest.raises(
        BackboneFileError, match=r"does not fit the MobileNetV2 backbone: .*features\.7\.layers\.3\.weight"
    ):
        load_backbone_file_into(backbone, weights)
    assert np.array_equal(backbone.features[7].layers[3].weight.asnumpy(), before)  # nothing assigned


def test_the_nasfpnlite_config_builds_the_mobile_network():
    from nasfpn.model import build_detector
    from nasfpn.model.layers import SeparableConv2d

    cfg = make_config("--config_path=configs/nasfpnlite_mbv2_384.yaml")
    detector = build_detector(cfg.model, cfg.anchors)
    count = sum(int(np.prod(p.shape)) for p in detector.get_parameters() if "moving_" not in p.name)
    release = sum(
        int(np.prod(p.shape))
        for p in build_detector(*sections(make_config())).get_parameters()
        if "moving_" not in p.name
    )
    assert count < release / 20  # ~2.5 M against ~86 M
    separable = [name for name, cell in detector.cells_and_names() if isinstance(cell, SeparableConv2d)]
    assert len(separable) == 7 * 7 + 5 * 2 * 5  # 7 output convs a stage; 4 + 1 convs per subnet and level


@pytest.mark.slow
def test_nasfpnlite_trains_on_cpu_and_its_checkpoint_says_what_it_is(repo_root, tiny_mindrecord, tmp_path):
    """train.py with the NAS-FPNLite config at a tiny size: finite losses, and a checkpoint whose
    description names the backbone, the separable convs and the activation, so eval needs no options."""
    from nasfpn.model_files.description import read_description
    from tests.helpers.tiny_training import log_rows, run_train

    run = run_train(
        repo_root,
        "--config_path=configs/nasfpnlite_mbv2_384.yaml",
        "--img_shape=[128,128]", "--fpn_stages=2", "--backbone_width=0.35", "--num_classes=4",
        "--anchor_size=[8,16,32,64,128]", "--batch_size=2", "--num_parallel_workers=1", "--epoch_size=1",
        "--scale_jitter=false", "--deep_supervision=True", "--lr=0.01", "--lr_scale_by_batch=false",
        f"--mindrecord_dir={tiny_mindrecord[0]}", f"--save_checkpoint_path={tmp_path}",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = log_rows(tmp_path / "ckpt_0" / "train_log.csv")
    assert len(rows) == 4 and all(np.isfinite(float(r["loss"])) for r in rows)
    ckpt = sorted((tmp_path / "ckpt_0").glob("*.ckpt"))[-1]
    options = read_description(str(ckpt)).options
    assert (options["backbone"], options["backbone_width"], options["separable_conv"], options["activation"]) == (
        "mobilenet_v2", 0.35, True, "relu6")  # fmt: skip
    assert options["deep_supervision"] is True
    # every anytime exit evaluated from the checkpoint alone (its options come from the file)
    out = tmp_path / "exits"
    done = subprocess.run(
        [sys.executable, "eval.py", f"--checkpoint_path={ckpt}", f"--mindrecord_dir={tiny_mindrecord[0]}",
         f"--anno_path={tiny_mindrecord[1]}/annotations/instances_val2017.json", f"--eval_output_dir={out}",
         "--eval_exits=True", "--num_parallel_workers=1"],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    exits = json.loads((out / "exits.json").read_text())["exits"]
    assert [row["exit_stage"] for row in exits] == [1, 2]
    for row in exits:  # each row is that exit's own metrics.json
        metrics = json.loads((out / f"exit_{row['exit_stage']}" / "metrics.json").read_text())
        assert row["AP"] == metrics["AP"] and 0.0 <= row["AP"] <= 1.0
