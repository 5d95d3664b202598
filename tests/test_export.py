"""Export: MINDIR reloaded with mindspore.load + GraphCell and ONNX in onnxruntime give the cell's
outputs; export.py works as a user runs it (docs/architecture.md#export-and-the-ascend-310-files);
INT8 quantisation."""

import os
import subprocess
import sys
import tempfile

import mindspore as ms
import numpy as np
import pytest

from nasfpn.deploy.export import ONNX_OPSET, ExportError, export_network
from nasfpn.deploy.quantize import (
    CalibrationError,
    calibration_batches,
    calibration_images,
    int8_model_path,
    quantize_onnx_int8,
)
from nasfpn.inference.build import build_inference_network
from nasfpn.inference.runtimes import open_runtime
from tests.conftest import TINY, make_config
from tests.helpers.modes import switch_mode
from tests.helpers.random_heads import SPREAD_PRIOR, spread_heads


# Export: MINDIR reloaded with mindspore.load + GraphCell and ONNX in onnxruntime give the cell's
# outputs; export.py works as a user runs it (docs/architecture.md#export-and-the-ascend-310-files).


@pytest.fixture(scope="module")
def tiny_net(release_ckpt, request):
    switch_mode(request, ms.GRAPH_MODE)
    return build_inference_network(make_config(*TINY))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(2, 3, 128, 128)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_exported_model_matches_the_cell(tiny_net, images, tmp_path, fmt):
    """Into a folder and under a name that ms.export itself refuses (non-ASCII, a space): exported
    under an accepted temporary name, then renamed; reopened from that path and run."""
    ms.set_context(mode=ms.GRAPH_MODE)
    folder = tmp_path / "модели 模型"
    path = export_network(tiny_net, str(folder / "tiny ü"), fmt, batch_size=2, img_shape=(128, 128))
    assert path == str(folder / f"tiny ü.{fmt.lower()}")
    assert sorted(os.listdir(folder)) == [os.path.basename(path)]  # no temporary left behind
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith("nasfpn-export-")]
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
    cmd = [
        sys.executable,
        "export.py",
        f"--checkpoint_path={release_ckpt}",
        "--file_format=MINDIR",
        f"--file_name={out}",
        "--device_target=CPU",
    ]
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
    # On the TINY network (export.py builds the network before the format is refused): the
    # refusal is the format's, whatever the network, and the run takes a third of the CPU time.
    run = subprocess.run(
        [
            sys.executable,
            "export.py",
            "--file_format=AIR",
            "--device_target=CPU",
            f"--file_name={tmp_path / 'x'}",
            *TINY,
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "AIR needs an Ascend device" in run.stderr
    run = subprocess.run(
        [sys.executable, "export.py", "--file_formt=MINDIR"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "did you mean file_format" in run.stderr


@pytest.mark.slow
def test_export_cli_list_override_256_onnx(repo_root, tmp_path):
    """`--img_shape=[256,256]` from the command line builds, exports (ONNX) and runs."""
    out = tmp_path / "m256"
    run = subprocess.run(
        [
            sys.executable,
            "export.py",
            "--img_shape=[256,256]",
            "--file_format=ONNX",
            f"--file_name={out}",
            "--device_target=CPU",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    boxes, scores = open_runtime(str(out) + ".onnx")(np.zeros((1, 3, 256, 256), np.float32))
    assert boxes.shape == (1, 12276, 4) and scores.shape == (1, 12276, 81)
    assert np.isfinite(boxes).all() and 0 <= boxes.min() and boxes.max() <= 1


# INT8 export (nasfpn/deploy/quantize.py): on a small network calibrated on real images, the INT8 ONNX
# model is really quantized (int8 per-channel Conv weights, float32 decoder) and its outputs stay
# close to the float32 ONNX model's; calibration data errors are clear.

# Heads spread (tests/helpers/random_heads.py): outputs vary like a trained network's, so that the
# INT8 vs fp32 comparison is not trivially met.
ARGS = (*TINY, "--num_classes=4", *SPREAD_PRIOR)
IMG = (128, 128)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from nasfpn.data.embedded import generate_embedded_dataset

    root = str(tmp_path_factory.mktemp("calib") / "shapes")
    generate_embedded_dataset(root, num_train=1, num_val=12, size=144, seed=5)
    return os.path.join(root, "val2017")


@pytest.fixture(scope="module")
def models(image_folder, tmp_path_factory, request):
    """(fp32 ONNX path, INT8 ONNX path), calibrated on 8 of the folder's 12 images."""
    switch_mode(request, ms.GRAPH_MODE)
    ms.set_seed(3)
    cfg = make_config(*ARGS)
    net = spread_heads(build_inference_network(cfg))
    out = tmp_path_factory.mktemp("int8")
    fp32 = export_network(net, str(out / "tiny"), "ONNX", batch_size=1, img_shape=IMG)
    images = calibration_images(image_folder, cfg.model.img_shape, 8)
    int8 = quantize_onnx_int8(fp32, int8_model_path(fp32), calibration_batches(images, 1))
    return fp32, int8


@pytest.mark.slow
def test_int8_model_is_quantized_per_channel_with_a_float_decoder(models):
    import onnx
    from onnx import numpy_helper

    fp32_path, int8_path = models
    assert int8_path == fp32_path[: -len(".onnx")] + "_int8.onnx"
    assert sorted(os.listdir(os.path.dirname(int8_path))) == ["tiny.onnx", "tiny_int8.onnx"]
    model = onnx.load(int8_path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= ONNX_OPSET
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in model.graph.node for o in n.output}
    per_channel = 0
    for conv in convs:
        weight_dq = producers[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear"
        assert inits[weight_dq.input[0]].dtype == np.int8  # int8 weights stored
        scale = inits[weight_dq.input[1]]
        per_channel += scale.ndim == 1 and scale.size == inits[weight_dq.input[0]].shape[0] > 1
        assert producers[conv.input[0]].op_type == "DequantizeLinear"  # int8 activations in
    assert per_channel == len(convs)
    # The decoder and the sigmoid stay float32: no Q/DQ around Exp or Sigmoid.
    for node in model.graph.node:
        if node.op_type in ("Exp", "Sigmoid"):
            assert producers[node.input[0]].op_type != "DequantizeLinear"
    # ~4x smaller: int8 weights instead of float32 (plus scales and zero points).
    assert os.path.getsize(int8_path) < 0.35 * os.path.getsize(fp32_path)


@pytest.mark.slow
def test_int8_outputs_are_close_to_fp32_on_unseen_images(models, image_folder):
    """Tolerance: int8 activations have 255 steps over their calibrated range, so each quantized
    layer adds an error of ~0.1% of its range (step / sqrt(12)); over the ~20 convolutions on the
    longest path these add up to about 1% of the output's range. Measured here: 0.3% on average
    and <2% for the worst single value of the float32 outputs' spread; we allow 1% and 6% (3x
    margin for other CPUs' rounding); a wrongly scaled layer gives errors of the whole range."""
    fp32_path, int8_path = models
    cfg = make_config(*ARGS)
    unseen = np.stack(
        calibration_images(image_folder, cfg.model.img_shape, 12)[8:]
    )  # not used for calibration
    fp32, int8 = open_runtime(fp32_path), open_runtime(int8_path)
    for i in range(len(unseen)):
        ref, got = fp32(unseen[i : i + 1]), int8(unseen[i : i + 1])
        for name, r, g in zip(("boxes", "scores"), ref, got):
            spread = float(r.max() - r.min())
            assert spread > 0.05, f"{name}: fp32 outputs too uniform for a meaningful comparison"
            err = np.abs(g - r)
            assert err.mean() < 0.01 * spread, (name, err.mean(), spread)
            assert err.max() < 0.06 * spread, (name, err.max(), spread)
            assert not np.array_equal(g, r)  # it is a different (quantized) computation


def test_empty_calibration_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(
        CalibrationError,
        match=f"--calibration_data={tmp_path}: a folder with no "
        r"\.jpg/\.jpeg/\.png/\.bmp images",
    ):
        calibration_images(str(tmp_path), make_config(*ARGS).model.img_shape, 10)


def test_calibration_data_must_be_given_and_exist(tmp_path):
    cfg = make_config(*ARGS)
    with pytest.raises(CalibrationError, match="--quantize=int8 needs --calibration_data"):
        calibration_images("", cfg.model.img_shape, 10)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        calibration_images(str(tmp_path / "missing"), cfg.model.img_shape, 10)
    (tmp_path / "bad.mindrecord0").write_bytes(b"not a mindrecord")
    with pytest.raises(CalibrationError, match="not a readable eval MindRecord"):
        calibration_images(str(tmp_path / "bad.mindrecord0"), cfg.model.img_shape, 10)


def test_calibration_batches_fill_the_last_batch_with_repeats():
    images = [np.full((3, 2, 2), i, np.float32) for i in range(5)]
    batches = calibration_batches(images, 2)
    assert [b.shape for b in batches] == [(2, 3, 2, 2)] * 3
    assert [b[:, 0, 0, 0].tolist() for b in batches] == [[0, 1], [2, 3], [4, 0]]
    assert [b[:, 0, 0, 0].tolist() for b in calibration_batches(images[:1], 3)] == [[0, 0, 0]]
