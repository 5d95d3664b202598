"""A model-zoo release user's command lines, run as they are typed (space-separated flags, release
keys, release script forms), on a small COCO-format set whose categories are COCO names, with the
default num_classes 81: classes must land on their COCO positions."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

# The release's default_config.yaml: every key with its default (independent of ours).
RELEASE_KEYS = {
    "enable_modelarts": "False",
    "data_url": "''",
    "train_url": "''",
    "checkpoint_url": "''",
    "data_path": "/cache/data",
    "output_path": "/cache/train",
    "load_path": "/cache/checkpoint_path",
    "need_modelarts_dataset_unzip": "True",
    "modelarts_dataset_unzip_name": "MindRecord_COCO",
    "device_target": "Ascend",
    "device_id": "0",
    "distribute": "True",
    "enable_profiling": "False",
    "workers": "24",
    "mode": "sink",
    "epoch_size": "300",
    "batch_size": "16",
    "pre_trained": "''",
    "pre_trained_epoch_size": "0",
    "loss_scale": "1024",
    "filter_weight": "False",
    "save_checkpoint": "True",
    "save_checkpoint_epochs": "1",
    "keep_checkpoint_max": "10",
    "save_checkpoint_path": "./ckpt",
    "finish_epoch": "0",
    "dataset": "coco",
    "checkpoint_path": "''",
    "lr": "0.1",
    "global_step": "0",
    "lr_init": "1e-6",
    "lr_end_rate": "5e-3",
    "warmup_epochs": "2",
    "warmup_epochs1": "2",
    "warmup_epochs2": "5",
    "warmup_epochs3": "23",
    "warmup_epochs4": "60",
    "warmup_epochs5": "160",
    "momentum": "0.9",
    "weight_decay": "1.5e-4",
    "img_shape": "[640,640]",
    "num_retinanet_boxes": "76725",
    "match_thershold": "0.5",
    "nms_thershold": "0.6",
    "min_score": "0.1",
    "max_boxes": "100",
    "num_default": "[9,9,9,9,9]",
    "extras_out_channels": "[256,256,256,256,256]",
    "feature_size": "[80,40,20,10,5]",
    "aspect_ratios": "[[0.5,1,2],[0.5,1,2],[0.5,1,2],[0.5,1,2],[0.5,1,2]]",
    "steps": "[8,16,32,64,128]",
    "anchor_size": "[32,64,128,256,512]",
    "prior_scaling": "[0.1,0.2]",
    "gamma": "2.0",
    "alpha": "0.75",
    "num_classes": "81",
    "nasfpn_input_channels": "[512,1024,2048]",
    "nasfpn_out_channel": "256",
    "nasfpn_num_outs": "5",
    "nasfpn_stack_times": "7",
    "nasfpn_start_level": "0",
    "nasfpn_end_level": "-1",
    "create_dataset": "coco",
    "prefix": "retinanet.mindrecord",
    "is_training": "True",
    "mindrecord_dir": "/cache/MindRecord_COCO",
    "coco_root": "/cache/coco",
    "train_data_type": "train2017",
    "val_data_type": "val2017",
    "instances_set": "annotations/instances_{}.json",
    "image_dir": "''",
    "anno_path": "''",
    "file_format": "MINDIR",
    "export_batch_size": "1",
    "file_name": "retinanet_nasfpn",
    "result_path": "''",
    "dataset_path": "''",
}
# A COCO subset with the categories' COCO positions (index in coco_classes); ids deliberately not
# the COCO ids, so a mapping by id or by file order would give other indices.
SUBSET = {"person": 1, "car": 3, "dog": 17, "bottle": 40, "toothbrush": 80}
SUBSET_IDS = {"person": 101, "car": 102, "dog": 103, "bottle": 104, "toothbrush": 105}


def run(args, timeout=600, **kwargs):
    env = {**os.environ, "GLOG_v": "3"}
    return subprocess.run(
        args,
        cwd=kwargs.pop("cwd", REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def test_every_release_key_is_accepted_with_the_release_value():
    from nasfpn.config.flat import load_config

    argv = []
    for key, value in RELEASE_KEYS.items():
        argv += [f"--{key}", value]
    cfg = load_config(argv)
    assert cfg.num_parallel_workers == 24 and cfg.fpn_channels == 256 and cfg.fpn_stages == 7
    assert cfg.aspect_ratios == [0.5, 1.0, 2.0] and cfg.keep_checkpoint_max == 10
    assert cfg.device_target == "Ascend" and cfg.distribute is True and cfg.mode == "sink"
    assert load_config([]).keep_checkpoint_max == 10  # the release's default, not 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--nasfpn_input_channels", "[512,1024,2048]", "--backbone_depth", "18"],
            r"--nasfpn_input_channels: \[512, 1024, 2048\] does not match the value derived from backbone_depth \(\[128, 256, 512\]\)",
        ),
        (
            ["--extras_out_channels", "[256,256,256,256,256]", "--nasfpn_out_channel", "128"],
            r"--extras_out_channels: .* derived from fpn_channels and steps \(\[128, 128, 128, 128, 128\]\)",
        ),
        (["--nasfpn_end_level", "2"], r"--nasfpn_end_level: 2 does not match .* \(-1\)"),
        (
            ["--global_step", "10", "--pre_trained_epoch_size", "1"],
            r"--global_step=10 and --pre_trained_epoch_size=1 both set",
        ),
        (["--checkpoint_url", "https://example.org/x.ckpt"], r"ModelArts location .* --hub_url"),
        (["--aspect_ratios", "[[0.5,1,2],[1,2]]"], r"per-level ratios must be the same for every level"),
    ],
)
def test_release_keys_are_checked_against_ours(argv, message):
    from nasfpn.config.flat import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(argv)


def test_class_map_by_name_and_by_file_order():
    from nasfpn.config.flat import load_config
    from nasfpn.data.coco_format import BY_COCO_NAME, BY_FILE_ORDER, class_map

    names = load_config([]).coco_classes
    coco = {"categories": [{"id": SUBSET_IDS[n], "name": n} for n in SUBSET]}
    cmap = class_map(coco, names)
    assert cmap.rule == BY_COCO_NAME and cmap.num_classes == 81
    assert cmap.category_to_class == {SUBSET_IDS[n]: SUBSET[n] for n in SUBSET}
    other = {"categories": [{"id": 7, "name": "person"}, {"id": 3, "name": "widget"}]}
    cmap = class_map(other, names)
    assert cmap.rule == BY_FILE_ORDER and cmap.category_to_class == {3: 1, 7: 2}
    assert cmap.names == ("background", "widget", "person")


# ---- the release README's command lines, end to end -------------------------------------------


def relabel_to_coco_subset(anno_path):
    """Give the embedded set's annotations the subset's categories (cycling through them)."""
    with open(anno_path) as f:
        coco = json.load(f)
    names = list(SUBSET)
    coco["categories"] = [{"id": SUBSET_IDS[n], "name": n, "supercategory": "x"} for n in names]
    for i, ann in enumerate(coco["annotations"]):
        ann["category_id"] = SUBSET_IDS[names[i % len(names)]]
    with open(anno_path, "w") as f:
        json.dump(coco, f)
    return coco


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from nasfpn.data.embedded import generate_embedded_dataset

    base = tmp_path_factory.mktemp("release_user")
    root = generate_embedded_dataset(str(base / "coco"), 8, 4, 96, seed=3)
    annotations = {
        split: relabel_to_coco_subset(os.path.join(root, "annotations", f"instances_{split}.json"))
        for split in ("train2017", "val2017")
    }
    return {"base": base, "root": root, "mr": str(base / "MindRecord_COCO"), "coco": annotations}


def stored_classes(mindrecord):
    """img_id -> sorted class column of a MindRecord, read back from the files."""
    from mindspore.mindrecord import FileReader

    reader = FileReader(mindrecord, columns=["img_id", "annotation"])
    try:
        return {
            int(r["img_id"][0]): sorted(np.asarray(r["annotation"])[:, 4].tolist()) for r in reader.get_next()
        }
    finally:
        reader.close()


def expected_classes(coco):
    by_image = {}
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(SUBSET[name_of[ann["category_id"]]])
    return {img: sorted(v) for img, v in by_image.items()}


@pytest.fixture(scope="module")
def converted(workspace):
    """The README's two create_data.py lines, as typed (plus where the data is)."""
    where = ["--coco_root", workspace["root"], "--mindrecord_dir", workspace["mr"]]
    runs = [
        run(
            [
                sys.executable,
                "create_data.py",
                "--create_dataset",
                "coco",
                "--prefix",
                prefix,
                "--is_training",
                training,
                *where,
            ]
        )
        for prefix, training in (("retinanet.mindrecord", "True"), ("retinanet_eval.mindrecord", "False"))
    ]
    return runs


@pytest.mark.slow
def test_create_data_stores_coco_positions(workspace, converted):
    for result in converted:
        assert result.returncode == 0, result.stderr
        assert "classes: by COCO name onto coco_classes" in result.stdout
    for prefix, split in (("retinanet.mindrecord", "train2017"), ("retinanet_eval.mindrecord", "val2017")):
        stored = stored_classes(os.path.join(workspace["mr"], prefix + "0"))
        assert stored == expected_classes(workspace["coco"][split])
        assert set(c for v in stored.values() for c in v) <= set(SUBSET.values())
    assert {
        c for v in stored_classes(os.path.join(workspace["mr"], "retinanet.mindrecord0")).values() for c in v
    } == set(SUBSET.values())


# train.py with release keys (space-separated), the tiny network via our keys or release aliases
TRAIN_RELEASE_FLAGS = [
    "--device_target",
    "CPU",
    "--distribute",
    "False",
    "--workers",
    "1",
    "--mode",
    "sink",
    "--epoch_size",
    "1",
    "--batch_size",
    "4",
    "--keep_checkpoint_max",
    "10",
    "--nasfpn_stack_times",
    "1",
    "--nasfpn_out_channel",
    "64",
    "--nasfpn_input_channels",
    "[128,256,512]",
    "--lr",
    "0.01",
    "--warmup_epochs1",
    "1",
    "--warmup_epochs2",
    "0",
    "--warmup_epochs3",
    "0",
    "--warmup_epochs4",
    "0",
    "--warmup_epochs5",
    "0",
]
NETWORK = [
    "--img_shape",
    "[128,128]",
    "--backbone_depth",
    "18",
    "--head_convs",
    "1",
    "--anchor_size",
    "[8,16,32,64,128]",
]


@pytest.fixture(scope="module")
def trained(workspace, converted):
    ckpt_dir = str(workspace["base"] / "ckpt")
    result = run(
        [
            sys.executable,
            "train.py",
            "--mindrecord_dir",
            workspace["mr"],
            "--save_checkpoint_path",
            ckpt_dir,
            "--enable_profiling",
            "True",
            "--output_path",
            str(workspace["base"] / "train_out"),
            *TRAIN_RELEASE_FLAGS,
            *NETWORK,
        ]
    )
    return result, os.path.join(ckpt_dir, "ckpt_0", "retinanet-1_2.ckpt")


@pytest.mark.slow
def test_train_with_release_keys_and_profiling(workspace, trained):
    result, ckpt = trained
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(ckpt)
    assert "mode=sink: this trainer runs its own step loop" in result.stderr
    # 2 steps an epoch: the profiler covers step 2 and is closed at the end of the run
    assert "profiled 1 training steps" in result.stderr
    profiler = workspace["base"] / "train_out" / "profiler"
    assert profiler.is_dir() and any(profiler.rglob("*")), "no profiler output"


def last_map(stdout):
    lines = stdout.strip().splitlines()
    match = re.fullmatch(r"mAP: (\S+)", lines[-1])
    assert match, f"last line is not 'mAP: <value>': {lines[-1]!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def evaluated(workspace, trained):
    out = str(workspace["base"] / "eval")
    ann = os.path.join(workspace["root"], "annotations", "instances_{}.json")
    result = run(
        [
            "bash",
            "scripts/run_eval.sh",
            "CPU",
            "0",
            "coco",
            workspace["mr"],
            trained[1],
            ann,
            f"--eval_output_dir={out}",
            *[f"{k}={v}" for k, v in zip(NETWORK[::2], NETWORK[1::2])],
            "--nasfpn_stack_times=1",
            "--nasfpn_out_channel=64",
        ]
    )
    return result, out


@pytest.mark.slow
def test_eval_ends_with_map_and_reports_coco_category_ids(workspace, evaluated):
    result, out = evaluated
    assert result.returncode == 0, result.stdout[-3000:]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert last_map(result.stdout) == pytest.approx(metrics["AP"], abs=0)
    with open(os.path.join(out, "predictions.json")) as f:
        predictions = json.load(f)
    # an 81-class network on a 5-category file: only the file's categories are reported
    assert predictions and {p["category_id"] for p in predictions} <= set(SUBSET_IDS.values())


@pytest.mark.slow
def test_export_and_postprocess_as_the_release_readme(workspace, trained, evaluated):
    base = workspace["base"]
    mindir = str(base / "retinanet_nasfpn")
    result = run(
        [
            sys.executable,
            "export.py",
            "--file_name",
            mindir,
            "--file_format",
            "MINDIR",
            "--checkpoint_path",
            trained[1],
            "--device_target",
            "CPU",
            "--nasfpn_stack_times",
            "1",
            "--nasfpn_out_channel",
            "64",
            *NETWORK,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images = os.path.join(workspace["root"], "val2017")
    anno = os.path.join(workspace["root"], "annotations", "instances_val2017.json")
    results = str(base / "result_Files")
    twin = run(
        [
            sys.executable,
            "infer_310_twin.py",
            "--model_path",
            mindir + ".mindir",
            "--dataset_path",
            images,
            "--result_path",
            results,
            "--img_shape",
            "[128,128]",
        ]
    )
    assert twin.returncode == 0, twin.stderr[-3000:]
    post = run(
        [
            sys.executable,
            "postprocess.py",
            "--result_path",
            results,
            "--dataset_path",
            images,
            "--anno_path",
            anno,
            "--eval_output_dir",
            str(base / "post"),
            *NETWORK,
        ]
    )
    assert post.returncode == 0, post.stderr[-3000:]
    # the exported model on the 310 path scores what eval.py scored from the checkpoint
    assert last_map(post.stdout) == pytest.approx(last_map(evaluated[0].stdout), abs=1e-3)


# ---- Ascend-only forms on a machine without Ascend ----------------------------------------------

NO_ASCEND = not any(name.startswith("davinci") for name in os.listdir("/dev"))


@pytest.mark.skipif(not NO_ASCEND, reason="this machine has an Ascend device")
def test_release_single_train_form_means_ascend(tmp_path):
    result = run(["bash", "scripts/run_single_train.sh", "0", str(tmp_path)])
    assert result.returncode == 1
    assert "no Ascend device found (/dev/davinci*): training on Ascend needs one" in result.stderr
    assert f"bash scripts/run_single_train.sh CPU 0 {tmp_path}" in result.stderr
    bad = run(["bash", "scripts/run_single_train.sh", "0", str(tmp_path / "missing")])
    assert "MINDRECORD_DIR is not a directory" in bad.stderr  # parsed as DEVICE_ID MINDRECORD_DIR
    usage = run(["bash", "scripts/run_single_train.sh", "zero", str(tmp_path)])
    assert "DEVICE_TARGET (Ascend, GPU or CPU) or DEVICE_ID (the release's form), got 'zero'" in usage.stderr


def rank_table(path, servers):
    """An HCCL rank table: `servers` = [(server_id, device count)], rank ids in order."""
    rank, server_list = 0, []
    for server_id, count in servers:
        devices = []
        for d in range(count):
            devices.append({"device_id": str(d), "device_ip": f"192.98.{d}.1", "rank_id": str(rank)})
            rank += 1
        server_list.append({"server_id": server_id, "device": devices, "host_nic_ip": "reserve"})
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "server_count": str(len(servers)),
                "server_list": server_list,
                "status": "completed",
            }
        )
    )
    return str(path)


@pytest.mark.skipif(not NO_ASCEND, reason="this machine has an Ascend device")
def test_release_distribute_form_checks_the_rank_table_then_needs_ascend(tmp_path):
    one = rank_table(tmp_path / "rank_table_8pcs.json", [("10.0.0.1", 8)])
    result = run(["bash", "scripts/run_distribute_train.sh", "8", one, str(tmp_path)])
    assert result.returncode == 1 and "no Ascend device found (/dev/davinci*)" in result.stderr
    wrong = run(["bash", "scripts/run_distribute_train.sh", "4", one, str(tmp_path)])
    assert wrong.returncode == 1
    assert "DEVICE_NUM is 4 but" in wrong.stderr and "gives server 10.0.0.1 8 devices" in wrong.stderr
    two = rank_table(tmp_path / "rank_table_16pcs.json", [("10.0.0.1", 8), ("10.0.0.2", 8)])
    unknown = run(["bash", "scripts/run_distribute_train.sh", "8", two, str(tmp_path)])
    assert "lists 2 servers (10.0.0.1, 10.0.0.2) and none is this machine" in unknown.stderr


def test_rank_table_plan_of_the_second_server(tmp_path):
    from nasfpn.jobs.rank_table import RankTableError, launch_plan

    two = rank_table(tmp_path / "t.json", [("10.0.0.1", 8), ("10.0.0.2", 8)])
    size, devices = launch_plan(two, 8, "10.0.0.2")
    assert size == 16 and devices == [(d, 8 + d) for d in range(8)]
    with pytest.raises(RankTableError, match=r"devices per server: 10.0.0.1: 8, 10.0.0.2: 8"):
        launch_plan(two, 16, "10.0.0.2")


@pytest.mark.skipif(not NO_ASCEND, reason="this machine has an Ascend device")
def test_release_eval_form_means_ascend_and_fills_the_split(tmp_path):
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"x")
    (tmp_path / "instances_val2017.json").write_text("{}")
    result = run(
        [
            "bash",
            "scripts/run_eval.sh",
            "0",
            "coco",
            str(tmp_path),
            str(ckpt),
            str(tmp_path / "instances_{}.json"),
        ]
    )
    assert result.returncode == 1
    assert "no Ascend device found (/dev/davinci*): evaluating on Ascend needs one" in result.stderr
    assert f"{tmp_path}/instances_val2017.json" in result.stderr  # {} filled with val2017
    short = run(["bash", "scripts/run_eval.sh", "0", "coco", str(tmp_path)])
    assert "usage: bash scripts/run_eval.sh [DEVICE_TARGET] DEVICE_ID DATASET" in short.stderr
