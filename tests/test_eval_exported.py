"""eval.py --model_path: an exported MINDIR / ONNX model evaluates to the checkpoint's COCO metrics
(same post-processing and pycocotools), also when exported with a batch > 1 whose last batch is
padded; export.py --quantize=int8 calibrates on the eval MindRecord and its model evaluates too.

A random network finds none of the embedded shapes (every metric 0, which any model would match),
so the metrics are taken against a pseudo ground truth: the checkpoint's own top detections of
each image written as an annotation file. The checkpoint then scores high, and a model whose boxes
or scores differ loses AP."""

import json
import os

import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import convert_embedded_val_set, run_script
from tests.helpers.modes import switch_mode
from tests.helpers.random_heads import SPREAD_PRIOR, spread_heads

# Heads spread (tests/helpers/random_heads.py) so that the random network detects something and
# the metrics compared are not all zero.
ARGS = (*TINY, "--num_classes=4", *SPREAD_PRIOR)
NUM_IMAGES = 5  # odd: batches of 2 end with a padded one
PSEUDO_PER_IMAGE = 4  # top detections per image that become pseudo ground truth
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def run_cli(script, args, cwd):
    return run_script(script, ARGS, args, cwd)


@pytest.fixture(scope="module")
def work(tmp_path_factory, request):
    """Embedded val set -> eval MindRecord, a random-weight checkpoint, and its exports."""
    import mindspore as ms
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network

    base = tmp_path_factory.mktemp("evalexported")
    root, mindrecord_dir = convert_embedded_val_set(base, NUM_IMAGES, 8, ARGS)
    switch_mode(request, ms.GRAPH_MODE)
    ms.set_seed(2)
    net = spread_heads(build_inference_network(make_config(*ARGS)))
    ckpt = save_checkpoint_atomic(net, str(base / "tiny.ckpt"))
    models = {
        "mindir": export_network(net, str(base / "tiny"), "MINDIR", 1, (128, 128)),
        "onnx_b2": export_network(net, str(base / "tiny_b2"), "ONNX", 2, (128, 128)),
    }
    return {"base": base, "coco_root": root, "mindrecord_dir": mindrecord_dir, "ckpt": ckpt, "models": models}


def evaluate(work, model_arg, name, anno_path=None):
    out = work["base"] / f"eval_{name}"
    anno = [f"--anno_path={anno_path}"] if anno_path else []
    run = run_cli(
        "eval.py",
        [
            model_arg,
            f"--mindrecord_dir={work['mindrecord_dir']}",
            f"--coco_root={work['coco_root']}",
            f"--eval_output_dir={out}",
            *anno,
        ],
        cwd=str(work["base"]),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    with open(out / "predictions.json") as f:
        predictions = json.load(f)
    return metrics, predictions, run


def write_pseudo_ground_truth(anno_path, predictions, out_path):
    """The annotation file with its boxes replaced by the top PSEUDO_PER_IMAGE predictions of each
    image (same images and categories)."""
    with open(anno_path) as f:
        coco = json.load(f)
    annotations = []
    for image in coco["images"]:
        mine = sorted((p for p in predictions if p["image_id"] == image["id"]), key=lambda p: -p["score"])[
            :PSEUDO_PER_IMAGE
        ]
        for p in mine:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": p["category_id"],
                    "bbox": p["bbox"],
                    "area": p["bbox"][2] * p["bbox"][3],
                    "iscrowd": 0,
                }
            )
    coco["annotations"] = annotations
    with open(out_path, "w") as f:
        json.dump(coco, f)
    return str(out_path)


@pytest.fixture(scope="module")
def reference(work):
    """(metrics, predictions, run) of the checkpoint against the pseudo ground truth: eval.py's
    predictions of the checkpoint (they do not depend on the annotation file) scored against it
    by the pycocotools call eval.py makes - one eval.py run instead of a second identical one."""
    from nasfpn.evaluation.coco_metrics import coco_evaluate

    first, predictions, run = evaluate(work, f"--checkpoint_path={work['ckpt']}", "ckpt_first")
    anno = os.path.join(work["coco_root"], "annotations", "instances_val2017.json")
    work["pseudo"] = write_pseudo_ground_truth(anno, predictions, work["base"] / "pseudo.json")
    with open(work["pseudo"]) as f:
        image_ids = [image["id"] for image in json.load(f)["images"]]
    assert len(image_ids) == first["num_images"] == NUM_IMAGES
    stats, _ = coco_evaluate(work["pseudo"], predictions, image_ids)
    return {"num_images": first["num_images"], **stats}, predictions, run


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mindir", "onnx_b2"])
def test_exported_model_evaluates_to_the_checkpoints_metrics(work, reference, model):
    ref_metrics, ref_predictions, _ = reference
    metrics, predictions, run = evaluate(work, f"--model_path={work['models'][model]}", model, work["pseudo"])
    assert metrics["num_images"] == ref_metrics["num_images"] == NUM_IMAGES
    assert ref_metrics["AP50"] > 0.5 and ref_metrics["AR100"] > 0.5  # something to lose
    for key in METRICS:
        assert metrics[key] == pytest.approx(ref_metrics[key], abs=1e-6), key
    assert len(predictions) == len(ref_predictions)
    assert {p["image_id"] for p in predictions} == {p["image_id"] for p in ref_predictions}
    expected_batch = 2 if model == "onnx_b2" else 1
    assert f"batch {expected_batch})" in run.stderr


@pytest.mark.slow
def test_int8_export_from_the_eval_mindrecord_evaluates(work, reference):
    ref_metrics, ref_predictions, _ = reference
    from nasfpn.data.converters import find_mindrecord

    mindrecord = find_mindrecord(work["mindrecord_dir"], "retinanet_eval.mindrecord")
    name = work["base"] / "tiny_q"
    run = run_cli(
        "export.py",
        [
            f"--checkpoint_path={work['ckpt']}",
            "--file_format=ONNX",
            f"--file_name={name}",
            "--quantize=int8",
            f"--calibration_data={mindrecord}",
            "--calibration_images=4",
        ],
        cwd=str(work["base"]),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "calibrated on 4 images" in run.stderr
    assert os.path.isfile(f"{name}.onnx") and os.path.isfile(f"{name}_int8.onnx")
    metrics, predictions, run = evaluate(work, f"--model_path={name}_int8.onnx", "int8", work["pseudo"])
    assert metrics["num_images"] == NUM_IMAGES and predictions
    # the file's weights and the runtime's precision, stated apart
    assert f"{name}_int8.onnx: INT8 weights (QDQ: " in run.stderr and "; runtime onnxruntime" in run.stderr
    # The INT8 model finds the fp32 model's top boxes again (IoU >= 0.5), slightly moved.
    assert metrics["AP50"] > 0.8 * ref_metrics["AP50"]
    assert abs(len(predictions) - len(ref_predictions)) <= 0.2 * len(ref_predictions)


def test_export_refuses_an_empty_calibration_folder_before_exporting(work, tmp_path):
    empty = tmp_path / "calib"
    empty.mkdir()
    run = run_cli(
        "export.py",
        [
            "--file_format=ONNX",
            f"--file_name={tmp_path / 'm'}",
            "--quantize=int8",
            f"--calibration_data={empty}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert f"error: --calibration_data={empty}: a folder with no .jpg/.jpeg/.png/.bmp images" in run.stderr
    assert sorted(os.listdir(tmp_path)) == ["calib"]  # nothing exported


def test_int8_needs_onnx(tmp_path):
    run = run_cli(
        "export.py",
        [
            "--file_format=MINDIR",
            f"--file_name={tmp_path / 'm'}",
            "--quantize=int8",
            f"--calibration_data={tmp_path}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2 and "--quantize=int8 writes an ONNX Runtime model" in run.stderr


def test_eval_refuses_two_models(work, tmp_path):
    run = run_cli(
        "eval.py",
        [
            f"--checkpoint_path={work['ckpt']}",
            f"--model_path={work['models']['mindir']}",
            f"--mindrecord_dir={work['mindrecord_dir']}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2 and "give exactly one of --checkpoint_path" in run.stderr
    assert "['checkpoint_path', 'model_path']" in run.stderr


def test_eval_names_the_shape_a_model_was_exported_with(work, tmp_path):
    run = run_cli(
        "eval.py",
        [
            f"--model_path={work['models']['onnx_b2']}",
            "--img_shape=[256,256]",
            "--anchor_size=[16,32,64,128,256]",
            f"--mindrecord_dir={work['mindrecord_dir']}",
            f"--coco_root={work['coco_root']}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert "takes input [2, 3, 128, 128] but was given [2, 3, 256, 256]" in run.stderr
    assert "--img_shape=[128,128]" in run.stderr


@pytest.mark.slow
def test_infer_feeds_a_batch_model_batches_with_the_same_detections(work):
    """infer.py on 5 images with the batch-2 ONNX (batches 2, 2, 1+padding) finds what the
    batch-1 MINDIR finds, image by image."""
    images = os.path.join(work["coco_root"], "val2017")
    found = {}
    for model in ("mindir", "onnx_b2"):
        out = work["base"] / f"infer_{model}"
        run = run_cli(
            "infer.py",
            [
                f"--model_path={work['models'][model]}",
                f"--image={images}",
                f"--output_dir={out}",
                "--score_threshold=0.5",
                f"--anno_path={work['coco_root']}/annotations/instances_val2017.json",
            ],
            cwd=str(work["base"]),
        )
        assert run.returncode == 0, run.stderr[-3000:]
        with open(out / "detections.json") as f:
            found[model] = sorted(json.load(f), key=lambda d: (d["file_name"], -d["score"]))
        assert len([n for n in os.listdir(out) if n.endswith("_det.jpg")]) == NUM_IMAGES
    assert len(found["onnx_b2"]) == len(found["mindir"]) > 0
    for got, ref in zip(found["onnx_b2"], found["mindir"]):
        assert (got["file_name"], got["category_id"]) == (ref["file_name"], ref["category_id"])
        assert got["score"] == pytest.approx(ref["score"], abs=1e-4)
        assert got["bbox"] == pytest.approx(ref["bbox"], abs=1e-2)
