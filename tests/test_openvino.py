"""OpenVINO as a runtime (--runtime=openvino, an IR .xml): its float32 outputs equal ONNX Runtime's
on the same exported TINY model, eval.py's metrics through it equal ONNX Runtime's, bf16 runs where
the CPU has it, and the bad inputs (another network's file, an IR without its .bin, bf16 on a CPU
without it, OpenVINO not installed, options that do not apply) are one-line errors.

The network is the TINY one with spread heads (tests/helpers/random_heads.py): scores over (0, 1)
and boxes off their anchors, so that two runtimes that differ are seen to differ."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import assert_one_line_error, convert_embedded_val_set, run_script
from tests.helpers.modes import switch_mode
from tests.helpers.random_heads import SPREAD_PRIOR, spread_heads

ARGS = (*TINY, "--num_classes=4", *SPREAD_PRIOR)
NUM_IMAGES = 3
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# Float32 in another runtime (OpenVINO's CPU plugin against ONNX Runtime's kernels: other conv
# algorithms, fusions and summation orders). docs/tolerances.md: through D ~ 25 convolutions of
# K <= 9 x 512 terms the relative error of an activation is ~D sqrt(K) u = 1e-4. Scores are the
# sigmoid of logits of size up to L (slope <= 1/4): |d score| <= 1e-4 x L / 4, with L read off the
# reference's scores. Boxes in [0, 1] are anchor + offsets (exp for the sizes): |d box| <= 1e-4 x
# (1 + max |offset|); the spread heads' offsets stay below ~10 (their exp would leave the image),
# so 1.1e-3 bounds the boxes. Both bounds are ~10x the differences seen on AVX-512 (2e-7 / 2e-7).
RELATIVE_F32 = 1e-4
BOX_ATOL_F32 = RELATIVE_F32 * (1 + 10)
# bf16 keeps 8 mantissa bits: one rounding is 2^-9 = 2e-3 relative, and OpenVINO keeps the
# accumulations in float32, so activations carry ~2e-3 (a few roundings of random sign partly
# cancel). Scores move by <= 2e-3 x L / 4 x a factor 4 for the roundings along the path.
RELATIVE_BF16 = 2**-9 * 4


def ov_or_skip():
    return pytest.importorskip("openvino", reason="optional: pip install -r requirements-openvino.txt")


@pytest.fixture(scope="module")
def work(tmp_path_factory, request):
    """The TINY exported .onnx, its OpenVINO IR (converted with OpenVINO's own converter, float32
    weights kept), an eval MindRecord of NUM_IMAGES embedded images, and input images."""
    ov = ov_or_skip()
    import mindspore as ms
    from nasfpn.deploy.export import export_network
    from nasfpn.inference.build import build_inference_network

    base = tmp_path_factory.mktemp("openvino")
    switch_mode(request, ms.GRAPH_MODE)
    ms.set_seed(3)
    net = spread_heads(build_inference_network(make_config(*ARGS)))
    onnx = export_network(net, str(base / "tiny"), "ONNX", 1, (128, 128))
    xml = str(base / "ir" / "tiny.xml")
    os.makedirs(os.path.dirname(xml))
    ov.save_model(ov.convert_model(onnx), xml, compress_to_fp16=False)
    root, mindrecord_dir = convert_embedded_val_set(base, NUM_IMAGES, 5, ARGS)
    # A val image as the entry points prepare it (the heads spread their scores on such images).
    from nasfpn.deploy.quantize import calibration_images

    images = np.stack(
        calibration_images(os.path.join(root, "val2017"), make_config(*ARGS).model.img_shape, 1)
    )
    return {
        "base": base,
        "onnx": onnx,
        "xml": xml,
        "coco_root": root,
        "mindrecord_dir": mindrecord_dir,
        "images": images,
    }


def logit_bound(scores):
    """The largest |logit| behind float32 sigmoid scores (clipped where the sigmoid saturates)."""
    p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(np.abs(np.log(p / (1 - p))).max())


@pytest.fixture(scope="module")
def reference(work):
    from nasfpn.inference.runtimes import open_runtime

    return open_runtime(work["onnx"], runtime="onnxruntime")(work["images"])


@pytest.mark.parametrize("model", ["onnx", "xml"])
def test_openvino_f32_equals_onnx_runtime(work, reference, model):
    from nasfpn.inference.runtimes import open_runtime

    from nasfpn.inference.runtimes import describe_model_run

    runtime = open_runtime(work[model], runtime="openvino" if model == "onnx" else "auto")
    assert runtime.name == "openvino-f32" and runtime.input_shape == [1, 3, 128, 128]
    # the file's weights (said for an ONNX file) apart from the runtime's precision
    weights = ": float32 weights" if model == "onnx" else ""
    assert describe_model_run(work[model], runtime).startswith(
        f"{work[model]}{weights}; runtime openvino at inference precision f32"
    )
    assert runtime.score_columns == 4
    ref_boxes, ref_scores = reference
    boxes, scores = runtime(work["images"])
    assert boxes.shape == ref_boxes.shape == (1, 3069, 4) and scores.shape == (1, 3069, 4)
    assert np.ptp(ref_scores) > 0.1 and np.ptp(ref_boxes) > 0.5  # not constant: differences show
    np.testing.assert_allclose(boxes, ref_boxes, atol=BOX_ATOL_F32, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=RELATIVE_F32 * logit_bound(ref_scores) / 4, rtol=0)
    again = runtime(work["images"])  # the request's buffers are copied out, not aliased
    assert again[1] is not scores and np.array_equal(again[1], scores)


def test_bf16_runs_where_the_cpu_has_it(work, reference):
    ov = ov_or_skip()
    from nasfpn.inference.runtimes import open_runtime

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 (the refusal is tested below)")
    if os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("ONEDNN_MAX_CPU_ISA"):
        # the oneDNN ISA cap (docs/tolerances.md) also caps OpenVINO's kernels, while its
        # capabilities still list the CPU's bf16: no bf16 kernel can be built then
        pytest.skip("a oneDNN ISA cap is set: OpenVINO reports bf16 but cannot run it")
    runtime = open_runtime(work["onnx"], runtime="openvino", precision="bf16")
    assert runtime.name == "openvino-bf16"
    ref_boxes, ref_scores = reference
    boxes, scores = runtime(work["images"])
    score_diff = float(np.abs(scores - ref_scores).max())
    assert score_diff <= RELATIVE_BF16 * logit_bound(ref_scores) / 4
    assert float(np.abs(boxes - ref_boxes).max()) <= RELATIVE_BF16 * (1 + 10)
    # bf16 was applied, not ignored: float32 would agree to ~1e-6 (test above).
    assert score_diff > 1e-5


def evaluate(work, name, *options):
    """eval.py's main() (as bench_deploy.py calls it) on the val set: (metrics, predictions)."""
    import eval as eval_script

    out = work["base"] / f"eval_{name}"
    eval_script.main(
        [
            *ARGS,
            f"--model_path={work['onnx']}",
            f"--mindrecord_dir={work['mindrecord_dir']}",
            f"--coco_root={work['coco_root']}",
            f"--eval_output_dir={out}",
            "--report_images=0",
            *options,
        ]
    )
    with open(out / "metrics.json") as f, open(out / "predictions.json") as g:
        return json.load(f), json.load(g)


def test_eval_with_openvino_equals_onnx_runtime(work):
    """Against a pseudo ground truth (ONNX Runtime's own top detections, as in
    test_eval_exported.py) so that the metrics are not all 0. The same detections to 1e-4 in score
    and ~1e-3 px in box go through the same pycocotools: the metrics agree to 1e-6 unless two
    detections closer in score than the runtimes' difference swap ranks; one swap among the ~300
    detections changes a precision by at most 1/rank, and the AP averages 101 recall points of it,
    so 0.01 is the stated difference (seen: 0)."""
    from nasfpn.evaluation.coco_metrics import coco_evaluate
    from tests.test_eval_exported import write_pseudo_ground_truth

    _, ort_predictions = evaluate(work, "ort", "--runtime=onnxruntime")
    anno = os.path.join(work["coco_root"], "annotations", "instances_val2017.json")
    pseudo = write_pseudo_ground_truth(anno, ort_predictions, work["base"] / "pseudo.json")
    ref_metrics, _ = coco_evaluate(pseudo, ort_predictions, sorted({p["image_id"] for p in ort_predictions}))
    metrics, predictions = evaluate(work, "ov", "--runtime=openvino", f"--anno_path={pseudo}")
    assert metrics["num_images"] == NUM_IMAGES
    assert ref_metrics["AP50"] > 0.5 and ref_metrics["AR100"] > 0.5  # something to lose
    for key in METRICS:
        assert metrics[key] == pytest.approx(ref_metrics[key], abs=0.01), key
    assert abs(len(predictions) - len(ort_predictions)) <= 2  # at most a score at min_score flips
    ref_top = sorted(ort_predictions, key=lambda p: -p["score"])[:20]
    top = sorted(predictions, key=lambda p: -p["score"])[:20]
    assert [p["category_id"] for p in top] == [p["category_id"] for p in ref_top]
    # Scores to the bound above (L <= ~20 for these heads) and boxes to 1.1e-3 x 128 px at most.
    np.testing.assert_allclose([p["score"] for p in top], [p["score"] for p in ref_top], atol=1e-3)
    np.testing.assert_allclose([p["bbox"] for p in top], [p["bbox"] for p in ref_top], atol=0.15)


# ---- bad input -------------------------------------------------------------------------------


def another_networks_onnx(path):
    """A valid ONNX model that is not ours: one input [1, 3, 8, 8], one output (a ReLU)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_another_networks_onnx_is_refused(tmp_path, runtime):
    from nasfpn.inference.runtimes import ModelFileError, open_runtime

    if runtime == "openvino":
        ov_or_skip()
    path = another_networks_onnx(str(tmp_path / "other.onnx"))
    with pytest.raises(ModelFileError) as err:
        open_runtime(path, runtime=runtime)
    assert str(err.value) == (
        f"{path}: not a model of this project: expected one input [N, 3, H, W] and two outputs, "
        "boxes [N, A, 4] and scores [N, A, num_classes] (or a detections graph's four), got inputs "
        "[[1, 3, 8, 8]] and outputs [[1, 3, 8, 8]]; export the network with export.py"
    )


def test_ir_without_its_bin_is_a_one_line_error(work, tmp_path):
    """Through infer.py as a user runs it: exit 2, one line naming the .xml and the .bin."""
    xml = str(tmp_path / "tiny.xml")
    shutil.copy(work["xml"], xml)  # the .bin stays behind
    images = os.path.join(work["coco_root"], "val2017")
    anno = os.path.join(work["coco_root"], "annotations", "instances_val2017.json")
    run = run_script(
        "infer.py",
        ARGS,
        [
            f"--model_path={xml}",
            f"--image={images}",
            f"--anno_path={anno}",
            f"--output_dir={tmp_path / 'out'}",
        ],
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        run, 2, f"{xml}: an OpenVINO IR needs its weights file {tmp_path / 'tiny.bin'}, which does not exist"
    )
    assert not (tmp_path / "out" / "detections.json").exists()


def test_bf16_refused_on_a_cpu_without_it():
    """The check on the capabilities OpenVINO reports for a CPU without bf16 (AVX2-only x86 lists
    these): no machine of ours lacks it, so the list is given."""
    from nasfpn.inference.runtimes import ModelFileError, check_precision_supported

    capabilities = ["WINOGRAD", "FP32", "FP16", "INT8", "BIN", "EXPORT_IMPORT"]
    with pytest.raises(ModelFileError) as err:
        check_precision_supported("m.onnx", "bf16", capabilities, "Intel(R) Core(TM) i7-8700")
    assert str(err.value) == (
        "m.onnx: --precision=bf16 needs a CPU with BF16 support; this one "
        "(Intel(R) Core(TM) i7-8700) offers WINOGRAD, FP32, FP16, INT8, BIN, "
        "EXPORT_IMPORT: run with --precision=f32"
    )
    check_precision_supported("m.onnx", "f32", capabilities, "Intel(R) Core(TM) i7-8700")  # no error


def test_openvino_not_installed_names_the_package_and_the_file(tmp_path, monkeypatch):
    from nasfpn.inference.runtimes import MissingPackageError, open_runtime

    path = tmp_path / "m.onnx"
    path.write_bytes(b"not opened")
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` meets when absent
    with pytest.raises(MissingPackageError) as err:
        open_runtime(str(path), runtime="openvino")
    assert str(err.value) == (
        "--runtime=openvino needs the openvino package, which is not installed: "
        "pip install -r requirements-openvino.txt"
    )


@pytest.mark.parametrize(
    "suffix, runtime, precision, message",
    [
        (".mindir", "openvino", "f32", "a MINDIR runs in MindSpore; --runtime=openvino runs .onnx files"),
        (".xml", "onnxruntime", "f32", "an OpenVINO IR runs in OpenVINO only: use --runtime=openvino"),
        (".onnx", "auto", "bf16", "--precision=bf16 is an OpenVINO precision: add --runtime=openvino"),
    ],
)
def test_runtime_that_cannot_run_the_file_is_refused(tmp_path, suffix, runtime, precision, message):
    from nasfpn.inference.runtimes import ModelFileError, open_runtime

    path = tmp_path / f"m{suffix}"
    path.write_bytes(b"refused before it is read")
    with pytest.raises(ModelFileError) as err:
        open_runtime(str(path), runtime=runtime, precision=precision)
    assert str(err.value).startswith(f"{path}: {message}")


def test_config_refuses_runtime_options_that_do_not_apply():
    from nasfpn.config.flat import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"^--precision=bf16: ONNX Runtime runs float32 models in f32"):
        load_config(["--runtime=onnxruntime", "--precision=bf16"])
    with pytest.raises(
        ConfigError, match=r"^--runtime: expected one of \['auto', 'onnxruntime', 'openvino'\]"
    ):
        load_config(["--runtime=tensorrt"])
    with pytest.raises(ConfigError, match=r"^--runtime=openvino applies to an exported model"):
        load_config(["--runtime=openvino", "--checkpoint_path=m.ckpt"]).inference.check_model_choice()
