"""Ascend 310 deployment (SPEC.md sections 8-10): the Python twin of the C++ app writes the app's files,
MINDIR and ONNX agree, postprocess.py on those files gives eval.py's mAP, and run_infer_310.sh fails
early and clearly on bad arguments.

All on the TINY network (ResNet-18, 1 stage, 64 channels, 128x128) and 4 embedded-dataset images, one
of them renamed to a non-numeric file name (the release's get_imageId_from_fileName bug).
"""
import json
import os
import shutil
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, TINY, make_config

NUM_IMAGES = 4
# TINY anchors, computed here independently of src/boxes.py: levels 16,8,4,2,1 squared x 9 per cell.
TINY_ANCHORS = (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1) * 9
NUM_CLASSES = 81
ENV = {**os.environ, "PYTHONPATH": REPO_ROOT, "GLOG_v": "3"}


def run_cli(args, cwd=REPO_ROOT, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def run_script(args, timeout=120, **env):
    return subprocess.run(["bash", *args], cwd=REPO_ROOT, env={**ENV, **env}, capture_output=True,
                          text=True, timeout=timeout)


# ---- run_infer_310.sh: early, clear failures --------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 2])
def test_run_infer_310_needs_three_arguments(count):
    run = run_script(["scripts/run_infer_310.sh", *["x"] * count])
    assert run.returncode != 0
    assert f"expected at least 3 arguments, got {count}" in run.stderr
    assert "usage: bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH ANNO_PATH [DEVICE_ID]" in run.stderr


@pytest.fixture()
def fake_inputs(tmp_path):
    """Paths that exist (contents never read: every failure below happens before inference)."""
    mindir, images, anno = tmp_path / "m.mindir", tmp_path / "images", tmp_path / "anno.json"
    mindir.write_bytes(b"not a model")
    images.mkdir()
    anno.write_text("{}")
    return str(mindir), str(images), str(anno)


@pytest.mark.parametrize("missing, message", [(0, "MINDIR_PATH is not a file"),
                                              (1, "DATA_PATH is not a folder"),
                                              (2, "ANNO_PATH is not a file")])
def test_run_infer_310_names_a_missing_path(fake_inputs, tmp_path, missing, message):
    args = list(fake_inputs)
    args[missing] = str(tmp_path / "does_not_exist")
    run = run_script(["scripts/run_infer_310.sh", *args])
    assert run.returncode != 0
    assert f"{message}: {args[missing]}" in run.stderr


def test_run_infer_310_takes_device_id_from_the_fourth_argument(fake_inputs):
    run = run_script(["scripts/run_infer_310.sh", *fake_inputs, "gpu0"])
    assert run.returncode != 0 and "DEVICE_ID must be a non-negative integer, got 'gpu0'" in run.stderr
    run = run_script(["scripts/run_infer_310.sh", *fake_inputs, "3", "--img_shape=[100,128]"])
    assert run.returncode != 0 and "--img_shape: [100, 128] must be divisible" in run.stderr


def test_run_infer_310_stops_at_the_build_without_the_cpp_api(fake_inputs, tmp_path):
    """On a machine without the MindSpore C++ inference API the build step fails with a message and
    the log's location, before anything is run."""
    out = tmp_path / "out"
    run = run_script(["scripts/run_infer_310.sh", *fake_inputs, "1"], OUT_DIR=str(out),
                     MINDSPORE_PATH=str(tmp_path / "no_mindspore"))
    assert run.returncode != 0
    assert "no MindSpore C++ inference API" in run.stderr
    assert f"building the Ascend 310 app failed; see {out}/build.log" in run.stderr
    assert "include/api/model.h" in (out / "build.log").read_text()
    assert not (out / "result_Files").exists()
