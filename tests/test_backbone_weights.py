"""ImageNet backbone initialisation (nasfpn/model/backbone_weights.py, --backbone_pretrained,
--backbone_frozen_stages): files in the MindSpore model zoo's, mindcv's and torchvision's layouts
(float32, and bfloat16 / float16 as model hubs publish them), written here with random tensors
under their real names (tests/data/resnet50_*_manifest.tsv; mindcv's are the zoo's with
`down_sample` and `classifier`), loaded into the ResNet and checked against a numpy ResNet forward
computed from each file's own tensors; the refusals (type + message, nothing assigned); frozen
stages and the log line through train.py."""

import math
import os
import shlex

import ml_dtypes
import mindspore as ms
import numpy as np
import pytest
from mindspore.nn.utils import no_init_parameters
from safetensors.numpy import save_file

from nasfpn.config.flat import ConfigError
from nasfpn.core.errors import UserFileNotFoundError
from nasfpn.model.backbone_weights import (
    BackboneFileError,
    backbone_file_hint,
    load_backbone_into,
    read_backbone_weights,
)
from nasfpn.model.resnet import ResNet
from tests.conftest import REPO_ROOT, TINY, make_config
from tests.helpers.modes import switch_mode

DATA = os.path.join(REPO_ROOT, "tests", "data")
ZOO_R50 = os.path.join(DATA, "resnet50_zoo_manifest.tsv")
TORCHVISION_R50 = os.path.join(DATA, "resnet50_torchvision_manifest.tsv")
ZOO_BN = ("gamma", "beta", "moving_mean", "moving_variance")
TORCHVISION_BN = ("weight", "bias", "running_mean", "running_var")
BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}
# The network keeps its own BN eps (1e-3, docs/architecture.md) whatever the file was trained with:
# loading assigns tensors, not eps. The reference uses that eps, so it checks what the network must
# compute with the file's tensors; the eps choice itself is measured in docs/training.md.
NETWORK_BN_EPS = 1e-3
SIDE = 64  # C3, C4, C5 of 8x8, 4x4, 2x2: every stride and projection runs, at a small cost


# ---- files in the two layouts -------------------------------------------------------------------
def manifest_shapes(path):
    """(name, shape) rows of a manifest (name, shape[, dtype] columns)."""
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    return [(row[0], tuple(int(d) for d in row[1].strip("[]").split(",") if d.strip())) for row in rows]


def zoo_resnet18_shapes():
    """The zoo's ResNet-18 names (its basic block calls its BNs bn1d, bn2d), shapes by hand."""
    rows = [("conv1.weight", (64, 3, 7, 7))] + [(f"bn1.{k}", (64,)) for k in ZOO_BN]
    in_channels = 64
    for stage, width in enumerate((64, 128, 256, 512), 1):
        for i in range(2):
            p, stride = f"layer{stage}.{i}", 2 if stage > 1 and i == 0 else 1
            rows += [(f"{p}.conv1.weight", (width, in_channels, 3, 3))]
            rows += [(f"{p}.bn1d.{k}", (width,)) for k in ZOO_BN]
            rows += [(f"{p}.conv2.weight", (width, width, 3, 3))]
            rows += [(f"{p}.bn2d.{k}", (width,)) for k in ZOO_BN]
            if stride != 1 or in_channels != width:
                rows += [(f"{p}.down_sample_layer.0.weight", (width, in_channels, 1, 1))]
                rows += [(f"{p}.down_sample_layer.1.{k}", (width,)) for k in ZOO_BN]
            in_channels = width
    return rows + [("end_point.weight", (1001, 512)), ("end_point.bias", (1001,))]


def mindcv_names(rows):
    """mindcv's ResNet names: the zoo's with `down_sample` for `down_sample_layer` and `classifier`
    for `end_point` (the layout of the checkpoints mindcv publishes)."""
    return [
        (name.replace(".down_sample_layer.", ".down_sample.").replace("end_point.", "classifier."), shape)
        for name, shape in rows
    ]


def random_tensors(rows, seed):
    """Random values by role: conv weights He-scaled (activations keep their scale through the
    depth), BN statistics and affine terms far from the identity (1, 0), so a swapped or skipped
    BN tensor changes the outputs by O(1)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in rows:
        leaf = name.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            tensors[name] = np.array(12345, np.int64)
            continue
        if len(shape) == 4:
            value = rng.standard_normal(shape, np.float32) * np.float32(math.sqrt(2.0 / np.prod(shape[1:])))
        elif leaf in ("moving_variance", "running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif leaf in ("gamma",) or (leaf == "weight" and len(shape) == 1):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # beta / bias, means, the classifier
            value = rng.normal(0.0, 0.2, shape)
        tensors[name] = value.astype(np.float32)
    return tensors


def optimizer_state(tensors):
    """What a zoo training checkpoint holds beside the network. The moments are left out by name,
    so their shape does not matter: one value each keeps the file small."""
    state = {f"moments.{name}": np.zeros(1, np.float32) for name in tensors}
    state.update(
        learning_rate=np.array(0.1, np.float32),
        momentum=np.array(0.9, np.float32),
        global_step=np.array([5000], np.int32),
    )
    return state


def save_ckpt(tensors, path):
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in tensors.items()], str(path))
    return str(path)


# ---- the numpy ResNet ---------------------------------------------------------------------------
def conv(x, weight, stride):
    """Cross-correlation with MindSpore's pad_mode="same" (the network's): total padding
    max((out - 1) * stride + k - in, 0), the odd pixel at the bottom / right."""
    k = weight.shape[2]
    pads = []
    for size in x.shape[2:]:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, ((0, 0), (0, 0), *pads))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.tensordot(windows, weight.astype(np.float64), axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def max_pool_3x3_s2(x):
    size = x.shape[2]
    total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
    pad = (total // 2, total - total // 2)
    padded = np.pad(x, ((0, 0), (0, 0), pad, pad), constant_values=-np.inf)
    return np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(
        axis=(4, 5)
    )


def relu(x):
    return np.maximum(x, 0.0)


def reference_c3_c4_c5(t, image, depth, bn_keys, shortcut, block_bns, eps=NETWORK_BN_EPS):
    """ResNet v1.5 forward in float64 from the file's tensors `t` under the file's own names:
    `bn_keys` its BN tensors (gamma, beta, mean, variance), `shortcut` its projection module,
    `block_bns` its block BN names."""

    def bn(x, prefix):
        gamma, beta, mean, var = (
            t[f"{prefix}.{key}"].astype(np.float64)[None, :, None, None] for key in bn_keys
        )
        return gamma * (x - mean) / np.sqrt(var + eps) + beta

    x = max_pool_3x3_s2(relu(bn(conv(image, t["conv1.weight"], 2), "bn1")))
    outputs = []
    for stage, count in enumerate(BLOCKS[depth], 1):
        for i in range(count):
            p, stride = f"layer{stage}.{i}", 2 if stage > 1 and i == 0 else 1
            if depth >= 50:  # bottleneck: stride on the 3x3 conv
                out = relu(bn(conv(x, t[f"{p}.conv1.weight"], 1), f"{p}.{block_bns[0]}"))
                out = relu(bn(conv(out, t[f"{p}.conv2.weight"], stride), f"{p}.{block_bns[1]}"))
                out = bn(conv(out, t[f"{p}.conv3.weight"], 1), f"{p}.{block_bns[2]}")
            else:
                out = relu(bn(conv(x, t[f"{p}.conv1.weight"], stride), f"{p}.{block_bns[0]}"))
                out = bn(conv(out, t[f"{p}.conv2.weight"], 1), f"{p}.{block_bns[1]}")
            projection = f"{p}.{shortcut}"
            identity = (
                bn(conv(x, t[f"{projection}.0.weight"], stride), f"{projection}.1")
                if f"{projection}.0.weight" in t
                else x
            )
            x = relu(out + identity)
        outputs.append(x)
    return outputs[1:]


def float32_tolerance(depth, blocks):
    """Relative to max |reference|: float32 rounds each product-sum of K terms with a random-walk
    error of about sqrt(K) * 2^-24 relative; L convolutions in series add independent errors, so
    sqrt(L) of them; 5 such standard deviations cover the max over all outputs. K is the largest
    reduction (512 x 3 x 3 in layer4), L the convs on the longest path (stem + per block). ResNet-50:
    1.4e-4 (measured: 9e-7). A mapping fault moves outputs by O(1); even the BN eps of the
    torchvision training (1e-5) instead of the network's moves C5 by 1.2e-2 of max |C5| here."""
    convs_per_block = 3 if depth >= 50 else 2
    longest_path = 1 + sum(blocks) * convs_per_block
    return 5 * math.sqrt(longest_path) * math.sqrt(512 * 9) * 2.0**-24


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pynative(request):
    """One forward of a bare ResNet: PyNative runs it without a graph compile."""
    switch_mode(request, ms.PYNATIVE_MODE)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(7).normal(0.0, 1.0, (1, 3, SIDE, SIDE)).astype(np.float32)


@pytest.fixture(scope="module")
def zoo_r50_names(tmp_path_factory):
    """The zoo's ResNet-50 training checkpoint by name and shape (zeros: its values are the R-18
    golden's subject; these names are ours without the prefix)."""
    tensors = {name: np.zeros(shape, np.float32) for name, shape in manifest_shapes(ZOO_R50)}
    return save_ckpt(
        {**tensors, **optimizer_state(tensors)}, tmp_path_factory.mktemp("zoo") / "resnet50.ckpt"
    )


@pytest.fixture(scope="module")
def torchvision_r50(tmp_path_factory):
    tensors = random_tensors(manifest_shapes(TORCHVISION_R50), seed=2)
    path = str(tmp_path_factory.mktemp("tv") / "resnet50.safetensors")
    save_file(tensors, path)
    return path, tensors


@pytest.fixture(scope="module")
def mindcv_r50(tmp_path_factory):
    tensors = random_tensors(mindcv_names(manifest_shapes(ZOO_R50)), seed=4)
    path = save_ckpt(
        {**tensors, **optimizer_state(tensors)}, tmp_path_factory.mktemp("mindcv") / "resnet50_224.ckpt"
    )
    return path, tensors


@pytest.fixture(scope="module")
def torchvision_r50_bf16(tmp_path_factory):
    """A bfloat16 hub file: the float32 random tensors rounded to bfloat16 (the counters stay int64);
    the reference computes with the rounded values, which float32 holds exactly."""
    tensors = {
        name: value.astype(ml_dtypes.bfloat16) if value.dtype == np.float32 else value
        for name, value in random_tensors(manifest_shapes(TORCHVISION_R50), seed=5).items()
    }
    path = str(tmp_path_factory.mktemp("tv16") / "model.safetensors")
    save_file(tensors, path)
    return path, {name: value.astype(np.float64) for name, value in tensors.items()}


@pytest.fixture(scope="module")
def zoo_r18(tmp_path_factory):
    tensors = random_tensors(zoo_resnet18_shapes(), seed=3)
    path = save_ckpt(
        {**tensors, **optimizer_state(tensors)}, tmp_path_factory.mktemp("zoo18") / "resnet18.ckpt"
    )
    return path, tensors


@pytest.fixture(scope="module")
def resnet50():
    """One ResNet-50 for both layouts: the zoo file's zeros are loaded first, so a parameter the
    torchvision file did not reach would stay zero and show in the golden outputs. Built without
    initial values: every parameter is loaded (or, read first, initialised then)."""
    with no_init_parameters():
        return ResNet(50, 0.997)


@pytest.fixture(scope="module")
def resnet18():
    with no_init_parameters():  # initialised when first read, unless a file sets it before
        return ResNet(18, 0.997)


def backbone_outputs(backbone, path, depth, image):
    weights = read_backbone_weights(path, depth)
    load_backbone_into(backbone, weights)
    backbone.set_train(False)
    return weights, [c.asnumpy() for c in backbone(ms.Tensor(image))]


def assert_matches_reference(got, want, depth):
    tolerance = float32_tolerance(depth, BLOCKS[depth])
    for level, (g, w) in enumerate(zip(got, want), 3):
        assert g.shape == w.shape, (level, g.shape, w.shape)
        error = np.abs(g - w).max() / np.abs(w).max()
        assert error <= tolerance, (
            f"C{level}: max error {error:.2e} of max |C{level}|, allowed {tolerance:.2e}"
        )


# ---- golden --------------------------------------------------------------------------------------
def test_every_tensor_of_a_zoo_resnet50_checkpoint_fits_and_the_rest_is_ignored(resnet50, zoo_r50_names):
    weights = read_backbone_weights(zoo_r50_names, 50)
    assert (weights.layout, len(weights.tensors)) == ("zoo", 265)  # 267 less the classifier
    assert weights.ignored == {"classifier": 2, "optimizer state": 270}
    assert weights.summary() == (
        f"backbone from {zoo_r50_names} (zoo layout, ResNet-50, 265 tensors; "
        "ignored: classifier, optimizer state)"
    )
    assert load_backbone_into(resnet50, weights) == len(list(resnet50.get_parameters())) == 265
    assert all(not p.asnumpy().any() for p in resnet50.get_parameters())


def test_torchvision_resnet50_safetensors_gives_the_reference_c3_c4_c5(
    pynative, resnet50, torchvision_r50, image
):
    path, tensors = torchvision_r50
    weights, got = backbone_outputs(resnet50, path, 50, image)
    assert (weights.layout, len(weights.tensors)) == ("torchvision", 265)  # 320 - 53 counters - fc
    assert weights.ignored == {"BN step counters": 53, "classifier": 2}
    want = reference_c3_c4_c5(
        tensors, image.astype(np.float64), 50, TORCHVISION_BN, "downsample", ("bn1", "bn2", "bn3")
    )
    assert_matches_reference(got, want, 50)


def test_mindcv_resnet50_checkpoint_gives_the_reference_c3_c4_c5(pynative, resnet50, mindcv_r50, image):
    path, tensors = mindcv_r50
    weights, got = backbone_outputs(resnet50, path, 50, image)
    assert (weights.layout, len(weights.tensors)) == ("mindcv", 265)
    assert weights.ignored == {"classifier": 2, "optimizer state": 270}
    assert weights.summary().startswith(f"backbone from {path} (mindcv layout, ResNet-50, 265 tensors;")
    want = reference_c3_c4_c5(
        tensors, image.astype(np.float64), 50, ZOO_BN, "down_sample", ("bn1", "bn2", "bn3")
    )
    assert_matches_reference(got, want, 50)


def test_bfloat16_torchvision_safetensors_is_upcast_and_gives_the_reference(
    pynative, resnet50, torchvision_r50_bf16, image
):
    path, tensors = torchvision_r50_bf16
    weights, got = backbone_outputs(resnet50, path, 50, image)
    assert weights.upcast == {"bfloat16": 320 - 53}  # every float tensor; the counters are int64
    assert "265 tensors, 267 bfloat16 upcast to float32; ignored:" in weights.summary()
    want = reference_c3_c4_c5(
        tensors, image.astype(np.float64), 50, TORCHVISION_BN, "downsample", ("bn1", "bn2", "bn3")
    )
    assert_matches_reference(got, want, 50)


def test_float16_tensors_are_upcast_exactly(zoo_r18, tmp_path):
    _, tensors = zoo_r18
    half = {name: value.astype(np.float16) for name, value in tensors.items()}
    path = tmp_path / "resnet18_fp16.safetensors"
    save_file(half, str(path))
    weights = read_backbone_weights(str(path), 18)
    assert weights.upcast == {"float16": len(half)}
    assert all(weights.tensors[n].dtype == np.float32 for n in weights.tensors)
    assert all(np.array_equal(weights.tensors[n], half[n].astype(np.float32)) for n in weights.tensors)


def test_zoo_resnet18_checkpoint_with_its_block_bn_names_gives_the_reference(
    pynative, resnet18, zoo_r18, image
):
    path, tensors = zoo_r18
    _, got = backbone_outputs(resnet18, path, 18, image)
    want = reference_c3_c4_c5(
        tensors, image.astype(np.float64), 18, ZOO_BN, "down_sample_layer", ("bn1d", "bn2d")
    )
    assert_matches_reference(got, want, 18)


# ---- refusals: type, message, nothing assigned ------------------------------------------------------
def snapshot(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def assert_unchanged(cell, before):
    changed = [p.name for p in cell.get_parameters() if not np.array_equal(p.asnumpy(), before[p.name])]
    assert not changed, changed


def refused(cell, path, depth, *fragments, error=BackboneFileError):
    """Loading `path` into `cell` raises `error` with every fragment in its one-line message, and
    leaves every parameter of `cell` as it was."""
    before = snapshot(cell)
    with pytest.raises(error) as caught:
        load_backbone_into(cell, read_backbone_weights(str(path), depth))
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert_unchanged(cell, before)
    return message


def test_missing_extra_and_misshapen_tensors_are_refused_together_by_name(resnet18, zoo_r18, tmp_path):
    _, tensors = zoo_r18
    broken = dict(tensors)
    del broken["layer2.0.conv1.weight"]
    broken["layer1.0.conv9.weight"] = np.zeros((64, 64, 1, 1), np.float32)
    broken["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    path = save_ckpt(broken, tmp_path / "broken.ckpt")
    refused(
        resnet18,
        path,
        18,
        f"--backbone_pretrained={path} (zoo layout) does not fit the ResNet-18",
        "1 missing: layer2.0.conv1.weight",
        "1 misfit: conv1.weight [64, 3, 3, 3] (expected [64, 3, 7, 7])",
        "1 not in the backbone: layer1.0.conv9.weight",
        "(layouts tried: zoo, mindcv, torchvision; the closest shown)",
    )


def test_a_file_of_no_layout_names_the_layouts_tried_and_the_closest(resnet18, zoo_r18, tmp_path):
    """A zoo file whose shortcuts are named `shortcut` (no layout's name): mindcv's renames are closer
    than nothing but the zoo layout misses only the 3 shortcuts' 5 tensors each."""
    _, tensors = zoo_r18
    renamed = {name.replace(".down_sample_layer.", ".shortcut."): v for name, v in tensors.items()}
    path = save_ckpt(renamed, tmp_path / "odd_names.ckpt")
    message = refused(
        resnet18,
        path,
        18,
        f"--backbone_pretrained={path} (zoo layout) does not fit the ResNet-18 backbone: 15 missing: "
        "layer2.0.down_sample_layer.0.weight",
        "15 not in the backbone: layer2.0.shortcut.0.weight",
        "(layouts tried: zoo, mindcv, torchvision; the closest shown)",
    )
    assert "pre_trained" not in message, message


def test_a_whole_detector_checkpoint_points_to_pre_trained(resnet18, zoo_r18, tmp_path):
    _, tensors = zoo_r18
    detector = {f"network.backbone.{k}": v for k, v in tensors.items() if not k.startswith("end_point")}
    detector["network.neck.lateral_convs.0.conv.weight"] = np.zeros((64, 128, 1, 1), np.float32)
    path = save_ckpt(detector, tmp_path / "detector.ckpt")
    refused(
        resnet18,
        path,
        18,
        f"--backbone_pretrained={path} is a whole-detector checkpoint",
        "give it as --pre_trained",
    )


def deeper_layer3(rows, blocks):
    """The names of a ResNet-50 file with `blocks` blocks in layer3 (ResNet-101: 23), shapes [1]:
    the depth is read from the names, before any shape is looked at."""
    template = [name for name, _ in rows if name.startswith("layer3.5.")]
    names = [name for name, _ in rows]
    names += [name.replace("layer3.5.", f"layer3.{i}.") for i in range(6, blocks) for name in template]
    return {name: np.zeros((1,), np.float32) for name in names}


def test_a_resnet_of_another_depth_names_both_depths(resnet18, zoo_r18, tmp_path):
    path = save_ckpt(deeper_layer3(manifest_shapes(ZOO_R50), 23), tmp_path / "resnet101.ckpt")
    with pytest.raises(BackboneFileError) as caught:
        read_backbone_weights(path, 50)
    assert str(caught.value) == (
        f"--backbone_pretrained={path} holds a ResNet-101, the network's backbone "
        "is ResNet-50 (--backbone_depth=50): give a ResNet-50 file or set "
        "--backbone_depth=101"
    )
    r18_path, _ = zoo_r18
    refused(
        resnet18, r18_path, 50, "holds a ResNet-18, the network's backbone is ResNet-50 (--backbone_depth=50)"
    )
    odd = save_ckpt(deeper_layer3(manifest_shapes(ZOO_R50), 9), tmp_path / "odd.ckpt")
    refused(
        resnet18,
        odd,
        18,
        "holds a ResNet with (3, 4, 9, 3) bottleneck blocks per stage, the network's "
        "backbone is ResNet-18 (--backbone_depth=18): give a ResNet-18 file",
    )


def test_file_kinds_that_cannot_be_read(resnet18, tmp_path):
    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
    pth = tmp_path / "resnet50.pth"
    pth.write_bytes(b"not a zip")
    if not has_torch:
        message = refused(
            resnet18,
            pth,
            18,
            f"--backbone_pretrained={pth}: a .pth file needs torch, which is not "
            "installed; convert it to .safetensors",
            "s.save_file(",
            "weights_only=True",
        )
        # the command's last words are the two paths (shell-quoted: tests/test_faults_paths.py)
        assert shlex.split(message.split("with: ", 1)[1])[-2:] == [
            str(pth),
            str(tmp_path / "resnet50.safetensors"),
        ]
    else:
        refused(resnet18, pth, 18, f"--backbone_pretrained={pth}: not a readable torch file")
    npz = tmp_path / "resnet50.npz"
    npz.write_bytes(b"")
    refused(
        resnet18,
        npz,
        18,
        "expected a .ckpt (MindSpore model zoo), .safetensors or .pth (torchvision / "
        "timm) file, got a '.npz' file",
    )
    garbage = tmp_path / "resnet50.safetensors"
    garbage.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    refused(resnet18, garbage, 18, f"--backbone_pretrained={garbage}: not a readable safetensors file")
    refused(
        resnet18,
        tmp_path / "absent.ckpt",
        18,
        f"--backbone_pretrained={tmp_path / 'absent.ckpt'}: file not found",
        error=UserFileNotFoundError,
    )


def test_config_refuses_too_many_frozen_stages_and_two_starting_points():
    with pytest.raises(ConfigError) as caught:
        make_config("--backbone_frozen_stages=5")
    assert str(caught.value).startswith("--backbone_frozen_stages: expected in [0, 4]"), str(caught.value)
    assert str(caught.value).endswith("got 5"), str(caught.value)
    with pytest.raises(ConfigError) as caught:
        make_config("--backbone_pretrained=r50.ckpt", "--pre_trained=det.ckpt")
    assert str(caught.value) == (
        "--backbone_pretrained=r50.ckpt and --pre_trained=det.ckpt both set: "
        "pre_trained is a whole detector, its backbone included; give one"
    )


def test_a_backbone_file_given_as_pre_trained_points_to_backbone_pretrained(
    zoo_r18, torchvision_r50, tmp_path
):
    """Through the trainer's pre-trained path, for both layouts; nothing of the network changes."""
    from nasfpn.training.trainer import Trainer

    trainer = Trainer(make_config(*TINY, "--num_classes=4", f"--save_checkpoint_path={tmp_path}"), 4)
    _, zoo_tensors = zoo_r18
    mindcv_basic = {
        ".down_sample_layer.": ".down_sample.",
        ".bn1d.": ".bn1.",
        ".bn2d.": ".bn2.",
        "end_point.": "classifier.",
    }
    mindcv = {}
    for name, value in zoo_tensors.items():
        for zoo, theirs in mindcv_basic.items():
            name = name.replace(zoo, theirs)
        mindcv[name] = value
    mindcv = save_ckpt(mindcv, tmp_path / "mindcv18.ckpt")
    pointed = (
        (zoo_r18[0], "holds only a backbone (zoo layout), not a detector: give it as --backbone_pretrained"),
        (mindcv, "holds only a backbone (mindcv layout), not a detector: give it as --backbone_pretrained"),
        # the network is a ResNet-18: pointing to --backbone_pretrained would be refused there
        (
            torchvision_r50[0],
            "holds only a backbone, not a detector, and does not load as --backbone_pretrained either: "
            "holds a ResNet-50, the network's backbone is ResNet-18 (--backbone_depth=18): give a "
            "ResNet-18 file or set --backbone_depth=50",
        ),
    )
    for path, message in pointed:
        trainer.cfg.pre_trained = path
        before = snapshot(trainer.net)
        with pytest.raises(BackboneFileError) as caught:
            trainer.restore()
        assert str(caught.value) == f"--pre_trained={path} {message}"
        assert_unchanged(trainer.net, before)
    assert backbone_file_hint(str(tmp_path / "absent.ckpt")) == ""


# ---- train.py: the log line, frozen stages ----------------------------------------------------------
@pytest.mark.slow  # a train.py process
def test_train_py_starts_from_the_backbone_and_keeps_frozen_stages_fixed(zoo_r18, tiny_mindrecord, tmp_path):
    """Two steps with the stem, layer1 and layer2 frozen: in the checkpoint they (weights and BN
    statistics alike) are the file's bit for bit, while every tensor of layer3 and layer4 moved."""
    from tests.helpers.cli import run_script
    from tests.helpers.tiny_training import SHORT_SCHEDULE, TRAIN_ARGS

    path, tensors = zoo_r18
    mindrecord_dir, _ = tiny_mindrecord
    ckpt_root = tmp_path / "ckpt"
    run = run_script(
        "train.py",
        TRAIN_ARGS,
        (
            *SHORT_SCHEDULE,
            "--lr_init=0.01",
            "--batch_size=4",
            "--epoch_size=1",
            f"--mindrecord_dir={mindrecord_dir}",
            f"--save_checkpoint_path={ckpt_root}",
            f"--backbone_pretrained={path}",
            "--backbone_frozen_stages=2",
        ),
        tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert (
        f"backbone from {path} (zoo layout, ResNet-18, 100 tensors; ignored: classifier, optimizer state)"
    ) in output, output[-3000:]
    assert "backbone: stem and layer1..layer2 frozen (50 parameters" in output, output[-3000:]
    [checkpoint] = [n for n in os.listdir(ckpt_root / "ckpt_0") if n.endswith(".ckpt")]
    trained = {
        k: v.asnumpy()
        for k, v in ms.load_checkpoint(str(ckpt_root / "ckpt_0" / checkpoint)).items()
        if isinstance(v, ms.Parameter)
    }
    frozen, moved, still = [], [], []
    for name, value in tensors.items():
        if name.startswith("end_point."):
            continue
        ours = "network.backbone." + name.replace(".bn1d.", ".bn1.").replace(".bn2d.", ".bn2.")
        if name.startswith(("conv1.", "bn1.", "layer1.", "layer2.")):
            frozen.append(name)
            assert np.array_equal(trained[ours], value), f"frozen {name} changed"
        elif np.array_equal(trained[ours], value):
            still.append(name)
        else:
            moved.append(name)
    assert len(frozen) == 50 and len(moved) == 50 and not still, still


def test_resuming_with_fewer_frozen_stages_names_the_key(tmp_path):
    from nasfpn.model_files.checkpoint import CheckpointError
    from nasfpn.training.trainer import Trainer

    base = (*TINY, "--num_classes=4", f"--save_checkpoint_path={tmp_path}")
    frozen = Trainer(make_config(*base, "--backbone_frozen_stages=1"), 4)
    frozen.restore()
    saved = frozen.store.save_epoch(1, 4, 4)
    thawed = Trainer(make_config(*base, "--backbone_frozen_stages=0", "--resume=True"), 4)
    with pytest.raises(
        CheckpointError,
        match=rf"{saved} has no optimizer state for 15 backbone parameters "
        r"\(e.g. moments.network.backbone.conv1.weight\): it was trained with more frozen "
        r"stages; resume with its --backbone_frozen_stages",
    ):
        thawed.restore()
