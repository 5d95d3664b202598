"""Export: MINDIR reloaded with mindspore.load + GraphCell and ONNX in onnxruntime give the cell's
outputs; export.py works as a user runs it (docs/architecture.md#export-and-the-ascend-310-files)."""
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from src.inference.build import build_inference_network
from src.deploy.export import ExportError, export_network
from src.inference.runtimes import open_runtime
from tests.conftest import TINY, make_config


@pytest.fixture(scope="module")
def tiny_net(release_ckpt):
    ms.set_context(mode=ms.GRAPH_MODE)
    return build_inference_network(make_config(*TINY))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(2, 3, 128, 128)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_exported_model_matches_the_cell(tiny_net, images, tmp_path, fmt):
    ms.set_context(mode=ms.GRAPH_MODE)
    path = export_network(tiny_net, str(tmp_path / "tiny"), fmt, batch_size=2, img_shape=(128, 128))
    assert os.path.basename(path) == "tiny." + fmt.lower()
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # no temporary left behind
    ref_boxes, ref_scores = open_runtime(tiny_net)(images)
    runtime = open_runtime(path)
    boxes, scores = runtime(images)
    assert boxes.shape == ref_boxes.shape == (2, 3069, 4) and scores.shape == (2, 3069, 81)
    tol = 0 if fmt == "MINDIR" else 1e-5
    np.testing.assert_allclose(boxes, ref_boxes, atol=tol, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=tol, rtol=0)


def test_air_needs_ascend(tiny_net, tmp_path):
    with pytest.raises(ExportError, match="AIR needs an Ascend device"):
        export_network(tiny_net, str(tmp_path / "m"), "AIR", device_target="CPU")
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_export_cli_with_release_checkpoint_at_640(release_ckpt, repo_root, tmp_path):
    """The acceptance command, on the release-size network with a release-style checkpoint."""
    out = tmp_path / "out"
    cmd = [sys.executable, "export.py", f"--checkpoint_path={release_ckpt}", "--file_format=MINDIR",
           f"--file_name={out}", "--device_target=CPU"]
    run = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exported" in run.stderr + run.stdout
    ms.set_context(mode=ms.GRAPH_MODE)
    net = build_inference_network(make_config(), release_ckpt)
    x = np.random.default_rng(1).normal(size=(1, 3, 640, 640)).astype(np.float32)
    ref = open_runtime(net)(x)
    got = open_runtime(str(out) + ".mindir")(x)
    assert got[0].shape == (1, 76725, 4) and got[1].shape == (1, 76725, 81)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.slow
def test_export_cli_rejects_bad_input(repo_root, tmp_path):
    run = subprocess.run([sys.executable, "export.py", "--file_format=AIR", "--device_target=CPU",
                          f"--file_name={tmp_path / 'x'}", "--img_shape=[128,128]"],
                         cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "AIR needs an Ascend device" in run.stderr
    run = subprocess.run([sys.executable, "export.py", "--file_formt=MINDIR"], cwd=repo_root,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "did you mean file_format" in run.stderr


@pytest.mark.slow
def test_export_cli_list_override_256_onnx(repo_root, tmp_path):
    """`--img_shape=[256,256]` from the command line builds, exports (ONNX) and runs."""
    out = tmp_path / "m256"
    run = subprocess.run([sys.executable, "export.py", "--img_shape=[256,256]", "--file_format=ONNX",
                          f"--file_name={out}", "--device_target=CPU"],
                         cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    boxes, scores = open_runtime(str(out) + ".onnx")(np.zeros((1, 3, 256, 256), np.float32))
    assert boxes.shape == (1, 12276, 4) and scores.shape == (1, 12276, 81)
    assert np.isfinite(boxes).all() and 0 <= boxes.min() and boxes.max() <= 1
