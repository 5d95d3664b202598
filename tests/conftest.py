"""Shared fixtures. Expensive things (networks, checkpoints, datasets) are session/module scoped."""

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("GLOG_v", "3")

MANIFEST = os.path.join(REPO_ROOT, "tests", "data", "param_manifest.tsv")


@pytest.fixture(scope="module", autouse=True)
def mindspore_mode_per_module():
    """MindSpore's mode is process-wide: each module ends in the mode it began in, so a test that
    switches it inline (or a fixture that forgets to give it back) changes no later module."""
    ms = sys.modules.get("mindspore")
    before = ms.get_context("mode") if ms is not None else None
    yield
    if before is not None:
        ms.set_context(mode=before)


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def manifest_rows():
    from tests.helpers.manifest import read_manifest

    return read_manifest(MANIFEST)


@pytest.fixture(scope="session")
def release_ckpt(tmp_path_factory, manifest_rows):
    """A checkpoint laid out like the release's training output (network.* + optimizer state)."""
    import mindspore as ms
    from tests.helpers.manifest import manifest_checkpoint_params

    path = tmp_path_factory.mktemp("release") / "nasfpn_release_style.ckpt"
    ms.save_checkpoint(manifest_checkpoint_params(manifest_rows, seed=0), str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_mindrecord(tmp_path_factory):
    """(MindRecord folder, COCO root) of tests/helpers/tiny_training.py's 8-image set, built once
    for every file that trains on it. Read only: a test that damages it works on a copy."""
    from tests.helpers.tiny_training import build_tiny_mindrecord

    return build_tiny_mindrecord(str(tmp_path_factory.mktemp("tiny_mindrecord")))


@pytest.fixture(scope="session")
def tiny_first_epoch(repo_root, tiny_mindrecord, tmp_path_factory):
    """(rank folder, process) of one train.py epoch on tiny_mindrecord, run once: the checkpoint
    lineage that resume tests continue (tests/helpers/tiny_training.py:first_epoch_after_a_dead_run).
    Read only: a test that continues it works on a copy."""
    from tests.helpers.tiny_training import first_epoch_after_a_dead_run

    return first_epoch_after_a_dead_run(repo_root, tiny_mindrecord[0], tmp_path_factory.mktemp("first_epoch"))


def make_config(*overrides):
    """load_config with command-line style overrides, e.g. make_config('--img_shape=[256,256]')."""
    from nasfpn.config.flat import load_config

    return load_config(list(overrides))


# A light member of the family for fast tests: ResNet-18, 1 NAS-FPN stage, 64 channels, 128x128.
TINY = (
    "--img_shape=[128,128]",
    "--backbone_depth=18",
    "--fpn_stages=1",
    "--fpn_channels=64",
    "--head_convs=1",
    "--anchor_size=[8,16,32,64,128]",
)


@pytest.fixture(scope="module", autouse=True)
def restore_mindspore_mode():
    """Tests and module fixtures switch MindSpore between graph and PyNative mode; every module
    starts in the mode the session started in, whatever the module before it left."""
    import mindspore as ms

    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)
