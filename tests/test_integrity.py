"""Stored weights are checked before use (nasfpn/model_files/integrity.py): a checkpoint written here
carries MindSpore's CRC-32 and a copy with flipped bytes (same size) is refused by name; weights
with NaN / inf or a negative BatchNorm variance are refused naming the first bad parameter, by
eval.py, export.py, infer.py and train.py (--pre_trained, --backbone_pretrained) as real
processes, before any work. Resume's fallback past a damaged newest checkpoint is in
tests/test_trainer_faults.py; the loss-scale overflow rule in tests/test_loss_scale_overflow.py."""

import os

import mindspore as ms
import numpy as np
import pytest
from safetensors.numpy import save_file

from nasfpn.model_files.checkpoint import (
    DamagedCheckpointError,
    load_checkpoint_into,
    read_checkpoint,
    save_checkpoint_atomic,
)
from nasfpn.model_files.description import description_in_checkpoint
from nasfpn.model_files.integrity import (
    CRC_MARKER,
    DamagedFileError,
    check_weight_values,
    stored_crc,
    value_fault,
    verify_checkpoint_crc,
)
from tests.conftest import TINY, make_config
from tests.helpers.cli import assert_one_line_error, run_script

ARGS = (*TINY, "--num_classes=4")
FLIPPED = 256  # bytes, as the damage
HEAD = "network.head.multi_loc_layers.0.feats.0.weight"  # a box-subnet conv weight of the TINY network
VARIANCE = "network.backbone.layer1.0.bn1.moving_variance"


def flip_middle(src, dst, count=FLIPPED):
    """A copy of `src` with `count` bytes inverted in its middle: same size, same name pattern."""
    data = bytearray(open(src, "rb").read())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    with open(dst, "wb") as f:
        f.write(bytes(data))
    assert os.path.getsize(dst) == os.path.getsize(src)
    return str(dst)


def with_values(src, dst, name, change):
    """A checkpoint written by MindSpore (no CRC: damage a CRC cannot see) with `change` applied to
    parameter `name`'s array; the other entries as they were."""
    entries = []
    for key, value in ms.load_checkpoint(src).items():
        if isinstance(value, str):
            continue
        array = value.asnumpy().copy()
        if key == name:
            change(array)
        entries.append({"name": key, "data": ms.Tensor(array)})
    ms.save_checkpoint(entries, str(dst))
    return str(dst)


def three_nans(array):
    array.reshape(-1)[[0, 7, 11]] = np.nan


def one_negative(array):
    array.reshape(-1)[5] = -0.25


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A TINY inference checkpoint written by the project, its damaged copies, an eval set."""
    import create_data
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.inference.build import build_inference_network

    work = tmp_path_factory.mktemp("integrity")
    ms.set_seed(4)
    good = save_checkpoint_atomic(build_inference_network(make_config(*ARGS)), str(work / "tiny.ckpt"))
    root = generate_embedded_dataset(str(work / "shapes"), num_train=1, num_val=2, size=96, seed=8)
    create_data.main(
        [
            "--create_dataset=coco",
            f"--coco_root={root}",
            "--is_training=false",
            f"--mindrecord_dir={work / 'mr'}",
            "--num_shards=1",
            "--num_classes=4",
        ]
    )
    return {
        "good": good,
        "flipped": flip_middle(good, work / "flipped.ckpt"),
        "nan": with_values(good, work / "nan_head.ckpt", HEAD, three_nans),
        "negvar": with_values(good, work / "negative_variance.ckpt", VARIANCE, one_negative),
        "root": root,
        "mr": str(work / "mr"),
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
        "images": os.path.join(root, "val2017"),
        "work": work,
    }


# ---- the checksum ---------------------------------------------------------------------------
def test_a_checkpoint_written_here_ends_with_a_crc_that_matches(files):
    import binascii

    data = open(files["good"], "rb").read()
    assert data[-17:-10] == CRC_MARKER  # MindSpore's trailer: marker + 10 big-endian bytes
    assert stored_crc(files["good"]) == binascii.crc32(data[:-17])  # an independent CRC of the body
    assert verify_checkpoint_crc(files["good"]) == "crc32"


def test_flipped_bytes_are_refused_naming_the_file_and_both_crcs(files):
    import binascii

    data = open(files["flipped"], "rb").read()
    actual, recorded = binascii.crc32(data[:-17]), int.from_bytes(data[-10:], "big")
    message = f"{files['flipped']} is damaged: its CRC-32 is {actual:08x}, the file records {recorded:08x}"
    with pytest.raises(DamagedCheckpointError, match=message):
        read_checkpoint(files["flipped"])
    with pytest.raises(DamagedFileError, match=message):  # before its description is trusted
        description_in_checkpoint(files["flipped"])


def test_a_file_without_crc_is_read_as_before(files, tmp_path):
    """The release's checkpoints and the published one carry no CRC: nothing to check, loaded."""
    plain = str(tmp_path / "release_style.ckpt")
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.ones(3, np.float32))}], plain)
    assert stored_crc(plain) is None and verify_checkpoint_crc(plain) == "none"
    assert read_checkpoint(plain)["w"].asnumpy().tolist() == [1.0, 1.0, 1.0]


# ---- the values -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, values, expected",
    [
        ("a.weight", np.array([1.0, np.nan, 2.0, np.nan], np.float32), "holds NaN (2 of 4 values)"),
        ("a.weight", np.array([np.inf, -np.inf, 0.0], np.float32), "holds inf (2 of 3 values)"),
        (
            "a.weight",
            np.array([np.nan, np.inf], np.float32),
            "holds NaN (1 of 2 values) and inf (1 of 2 values)",
        ),
        (
            "bn.moving_variance",
            np.array([1.0, -0.5, 0.0], np.float32),
            "is a BatchNorm variance with 1 negative values of 3 (min -0.5; a variance is >= 0)",
        ),
        (
            "bn.running_var",
            np.array([-1.0], np.float32),
            "is a BatchNorm variance with 1 negative values of 1 (min -1; a variance is >= 0)",
        ),
        ("bn.moving_mean", np.array([-1.0, 0.0], np.float32), ""),  # a mean may be negative
        ("bn.moving_variance", np.array([0.0, 3.0], np.float32), ""),  # zero is a variance
        ("global_step", np.array([-3], np.int32), ""),  # not floating point: not a weight
    ],
)
def test_value_faults(name, values, expected):
    assert value_fault(name, values) == expected


def test_the_first_bad_parameter_is_named():
    named = {
        "ok": np.zeros(3, np.float32),
        "first": np.array([np.nan], np.float32),
        "second": np.array([np.inf], np.float32),
    }
    with pytest.raises(DamagedFileError, match=r"^src: first holds NaN \(1 of 1 values\); these weights"):
        check_weight_values(named, "src")


def test_loading_refuses_nan_weights_before_assigning_any(files):
    from nasfpn.inference.build import build_inference_network

    net = build_inference_network(make_config(*ARGS))
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    count = int(np.prod(ms.load_checkpoint(files["nan"])[HEAD].shape))
    with pytest.raises(
        DamagedCheckpointError, match=rf"{files['nan']}: {HEAD} holds NaN \(3 of {count} values\)"
    ):
        load_checkpoint_into(net, files["nan"])
    assert all(np.array_equal(p.asnumpy(), before[p.name]) for p in net.get_parameters())


# ---- the entry points, as real processes -----------------------------------------------------
ENTRY_CASES = [
    ("eval", "flipped", "is damaged: its CRC-32 is"),
    ("eval", "nan", f"{HEAD} holds NaN (3 of "),
    ("export", "nan", f"{HEAD} holds NaN (3 of "),
    ("export", "flipped", "is damaged: its CRC-32 is"),
    ("infer", "negvar", f"{VARIANCE} is a BatchNorm variance with 1 negative values"),
]


@pytest.mark.slow  # one process each (~10 s)
@pytest.mark.parametrize("script, fault, fragment", ENTRY_CASES)
def test_entry_points_refuse_a_damaged_checkpoint_in_one_line(files, tmp_path, script, fault, fragment):
    ckpt = files[fault]
    out = tmp_path / "out"
    options = {
        "eval": [
            f"--mindrecord_dir={files['mr']}",
            f"--anno_path={files['anno']}",
            f"--eval_output_dir={out}",
        ],
        "export": [f"--file_name={out / 'model'}", "--file_format=ONNX"],
        "infer": [f"--image={files['images']}", f"--anno_path={files['anno']}", f"--output_dir={out}"],
    }[script]
    run = run_script(f"{script}.py", ARGS, [f"--checkpoint_path={ckpt}", *options], tmp_path)
    assert_one_line_error(run, 2, ckpt, fragment)
    assert not out.exists() or not os.listdir(out)  # refused before any work: nothing written


@pytest.mark.slow  # a train.py process
def test_train_py_refuses_a_damaged_pre_trained_checkpoint(files, tiny_mindrecord, tmp_path):
    from tests.helpers.tiny_training import TRAIN_ARGS

    run = run_script(
        "train.py",
        TRAIN_ARGS,
        [
            f"--mindrecord_dir={tiny_mindrecord[0]}",
            f"--save_checkpoint_path={tmp_path / 'ckpt'}",
            f"--pre_trained={files['flipped']}",
            "--epoch_size=1",
        ],
        tmp_path,
    )
    assert_one_line_error(run, 2, files["flipped"], "is damaged: its CRC-32 is")
    assert not any(n.endswith(".ckpt") for _, _, names in os.walk(tmp_path / "ckpt") for n in names)


@pytest.mark.slow  # a train.py process
def test_train_py_refuses_a_backbone_file_with_nan(tiny_mindrecord, tmp_path):
    """A torchvision-layout ResNet-18 .safetensors (the names its tests use) with NaN in one BN."""
    from tests.helpers.tiny_training import TRAIN_ARGS
    from tests.test_backbone_weights import random_tensors, zoo_resnet18_shapes

    zoo = random_tensors(zoo_resnet18_shapes(), seed=3)
    zoo["layer2.0.conv1.weight"].reshape(-1)[:4] = np.nan
    path = str(tmp_path / "resnet18_nan.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in zoo.items()], path)
    run = run_script(
        "train.py",
        TRAIN_ARGS,
        [
            f"--mindrecord_dir={tiny_mindrecord[0]}",
            f"--save_checkpoint_path={tmp_path / 'ckpt'}",
            f"--backbone_pretrained={path}",
            "--epoch_size=1",
        ],
        tmp_path,
    )
    count = 128 * 64 * 3 * 3
    assert_one_line_error(
        run, 2, f"--backbone_pretrained={path}: layer2.0.conv1.weight holds NaN (4 of {count}"
    )


def test_a_torchvision_backbone_with_a_negative_variance_is_refused(tmp_path):
    """torchvision's ResNet-50 names and shapes (tests/data manifest), random values, one running
    variance below zero: refused by name, in the file's own names."""
    from nasfpn.model.backbone_weights import BackboneFileError, read_backbone_weights
    from tests.test_backbone_weights import TORCHVISION_R50, manifest_shapes, random_tensors

    tensors = random_tensors(manifest_shapes(TORCHVISION_R50), seed=5)
    tensors["layer3.2.bn2.running_var"][[1, 9]] = -0.5
    path = str(tmp_path / "resnet50_negative_variance.safetensors")
    save_file(tensors, path)
    with pytest.raises(
        BackboneFileError,
        match=rf"^--backbone_pretrained={path}: layer3.2.bn2.running_var is a BatchNorm variance with 2 "
        r"negative values of 256 \(min -0.5; a variance is >= 0\)",
    ):
        read_backbone_weights(path, 50)


@pytest.mark.slow  # two trainers built (~10 s)
def test_resume_skips_a_state_with_a_nan_moment_and_says_so(tmp_path, caplog):
    """A newest checkpoint without a CRC (as an earlier version wrote) whose weights are fine but one
    optimizer moment is NaN: the whole state continues, so resume skips it for the one before."""
    import logging

    from nasfpn.training.trainer import Trainer

    base = (*ARGS, f"--save_checkpoint_path={tmp_path}", "--keep_checkpoint_max=2")
    first = Trainer(make_config(*base), 4)
    first.restore()
    good = first.store.save_epoch(1, 4, 4)
    moment = "moments.network.backbone.conv1.weight"
    entries = []
    for name, value in ms.load_checkpoint(good).items():
        if isinstance(value, str):
            continue
        array = value.asnumpy().copy()
        if name == moment:
            array.reshape(-1)[2] = np.nan
        if name in ("global_step", "step_num"):
            array = np.full_like(array, 8)
        entries.append({"name": name, "data": ms.Tensor(array)})
    bad = os.path.join(first.ckpt_dir, "retinanet-2_4.ckpt")
    ms.save_checkpoint(entries, bad)
    first.store.record.add("retinanet-2_4.ckpt", 8, first.epoch_shape)
    first.store.record.save()
    second = Trainer(make_config(*base, "--resume=True"), 4)
    with caplog.at_level(logging.WARNING, logger="nasfpn"):
        assert second.restore() == 4
    assert second.resumed_from == good
    count = 64 * 3 * 7 * 7
    assert (
        f"resuming from {good}, an older checkpoint: {bad}: {moment} holds NaN (1 of {count} values)"
    ) in caplog.text
