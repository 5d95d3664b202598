"""Checkpoints and exports that carry their network options and class list (docs/checkpoints.md):
one tiny real training writes the checkpoint; eval / export / infer then need no model options,
give what they give with them, refuse a contradicting one naming both values, and match an
annotation file to the model's classes by name (a renumbered file maps identically)."""

import json
import os

import numpy as np
import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import run_script
from tests.helpers.tiny_training import run_train

MODEL_ARGS = (*TINY, "--num_classes=4")
# What the trained checkpoint must say about itself: TINY, written out here independently.
EXPECTED_OPTIONS = {
    "img_shape": [128, 128],
    "num_classes": 4,
    "backbone_depth": 18,
    "fpn_channels": 64,
    "fpn_stages": 1,
    "head_convs": 1,
    "cls_prior_probability": 0.0,
    "aspect_ratios": [0.5, 1.0, 2.0],
    "num_scales": 3,
    "steps": [8, 16, 32, 64, 128],
    "anchor_size": [8, 16, 32, 64, 128],
    "prior_scaling": [0.1, 0.2],
    # the paper's family: the release's values (nasfpn/model_files/description.py:FAMILY_DEFAULTS)
    "backbone": "resnet",
    "backbone_width": 1.0,
    "fpn_spec": None,
    "separable_conv": False,
    "fpn_combine": "nasfpn",
    "activation": "relu",
    "deep_supervision": False,
}
# The embedded set's categories (nasfpn/data/embedded.py) by class index.
EXPECTED_CLASSES = ("background", "circle", "square", "triangle")
PSEUDO_PER_IMAGE = 4
METRICS = ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, repo_root, tiny_mindrecord):
    """One epoch (4 steps) of train.py on the embedded set; the training annotation file is found
    through --coco_root, so the checkpoint carries the class names and category ids."""
    base = tmp_path_factory.mktemp("selfdesc")
    mindrecord_dir, coco_root = tiny_mindrecord
    run = run_train(
        repo_root,
        f"--mindrecord_dir={mindrecord_dir}",
        f"--coco_root={coco_root}",
        "--epoch_size=1",
        f"--save_checkpoint_path={base / 'ckpt'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = str(base / "ckpt" / "ckpt_0" / "retinanet-1_4.ckpt")
    return {
        "base": base,
        "ckpt": ckpt,
        "mindrecord_dir": mindrecord_dir,
        "coco_root": coco_root,
        "anno": os.path.join(coco_root, "annotations", "instances_val2017.json"),
    }


def run(trained, script, *args):
    """`script` as a user runs it (a subprocess: MindSpore's context is set once per process)."""
    return run_script(script, (), args, cwd=str(trained["base"]))


def evaluate(trained, name, *args):
    out = trained["base"] / f"eval_{name}"
    done = run(
        trained,
        "eval.py",
        f"--mindrecord_dir={trained['mindrecord_dir']}",
        f"--coco_root={trained['coco_root']}",
        f"--eval_output_dir={out}",
        *args,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    with open(out / "predictions.json") as f:
        return metrics, json.load(f)


def categories_by_id(anno_path):
    with open(anno_path) as f:
        return {c["id"]: c["name"] for c in json.load(f)["categories"]}


def by_name(predictions, anno_path):
    """Predictions with the category named, in a canonical order."""
    names = categories_by_id(anno_path)
    return sorted((p["image_id"], names[p["category_id"]], tuple(p["bbox"]), p["score"]) for p in predictions)


def write_pseudo_ground_truth(anno_path, predictions, out_path):
    """The annotation file with its boxes replaced by each image's top predictions, so the AP of
    these predictions is far from 0 and moves when a class is mapped to another."""
    with open(anno_path) as f:
        coco = json.load(f)
    annotations = []
    for image in coco["images"]:
        mine = sorted((p for p in predictions if p["image_id"] == image["id"]), key=lambda p: -p["score"])[
            :PSEUDO_PER_IMAGE
        ]
        annotations += [
            {
                "id": len(annotations) + 1,
                "image_id": image["id"],
                "category_id": p["category_id"],
                "bbox": p["bbox"],
                "area": p["bbox"][2] * p["bbox"][3],
                "iscrowd": 0,
            }
            for p in mine
        ]
    coco["annotations"] = annotations
    with open(out_path, "w") as f:
        json.dump(coco, f)
    return str(out_path)


def renumber(anno_path, new_ids, out_path):
    """The same file with category ids replaced by `new_ids` (old -> new) and the categories listed
    in another order: sorted by id, the classes come in another order than by name."""
    with open(anno_path) as f:
        coco = json.load(f)
    for category in coco["categories"]:
        category["id"] = new_ids[category["id"]]
    coco["categories"].reverse()
    for ann in coco["annotations"]:
        ann["category_id"] = new_ids[ann["category_id"]]
    with open(out_path, "w") as f:
        json.dump(coco, f)
    return str(out_path)


@pytest.fixture(scope="module")
def reference(trained):
    """Eval of the checkpoint with every model option given, against pseudo ground truth."""
    _, predictions = evaluate(trained, "first", f"--checkpoint_path={trained['ckpt']}", *MODEL_ARGS)
    trained["pseudo"] = write_pseudo_ground_truth(
        trained["anno"], predictions, trained["base"] / "pseudo.json"
    )
    return evaluate(
        trained,
        "with_options",
        f"--checkpoint_path={trained['ckpt']}",
        *MODEL_ARGS,
        f"--anno_path={trained['pseudo']}",
    )


@pytest.mark.slow
def test_the_trained_checkpoint_describes_itself_and_still_loads_strictly(trained):
    from nasfpn.model_files.checkpoint import load_checkpoint_into
    from nasfpn.inference.build import build_inference_network
    from nasfpn.model_files.description import read_description

    description = read_description(trained["ckpt"])
    assert description.options == EXPECTED_OPTIONS
    assert description.class_names == EXPECTED_CLASSES
    assert description.category_ids == (1, 2, 3)  # the embedded set's ids of circle, square, triangle
    ignored = load_checkpoint_into(build_inference_network(make_config(*MODEL_ARGS)), trained["ckpt"])
    assert "nasfpn_model" not in ignored and "global_step" in ignored


@pytest.mark.slow
def test_eval_without_model_options_gives_the_same_numbers(trained, reference):
    ref_metrics, ref_predictions = reference
    metrics, predictions = evaluate(
        trained, "without_options", f"--checkpoint_path={trained['ckpt']}", f"--anno_path={trained['pseudo']}"
    )
    assert ref_metrics["AP50"] > 0.1  # something to lose (about 0.25: the top boxes overlap)
    # Same graph, same weights, same inputs on the same machine: identical outputs.
    assert predictions == ref_predictions
    assert {k: metrics[k] for k in METRICS} == {k: ref_metrics[k] for k in METRICS}


@pytest.mark.slow
def test_a_renumbered_annotation_file_maps_classes_by_name(trained, reference):
    ref_metrics, ref_predictions = reference
    renumbered = renumber(trained["pseudo"], {1: 30, 2: 7, 3: 12}, trained["base"] / "renumbered.json")
    metrics, predictions = evaluate(
        trained, "renumbered", f"--checkpoint_path={trained['ckpt']}", f"--anno_path={renumbered}"
    )
    assert {p["category_id"] for p in predictions} <= {7, 12, 30}
    assert by_name(predictions, renumbered) == by_name(ref_predictions, trained["pseudo"])
    assert {k: metrics[k] for k in METRICS} == {k: ref_metrics[k] for k in METRICS}


@pytest.mark.slow
def test_eval_refuses_a_contradicting_option_in_one_line(trained):
    done = run(
        trained,
        "eval.py",
        f"--checkpoint_path={trained['ckpt']}",
        "--img_shape=[256,256]",
        f"--mindrecord_dir={trained['mindrecord_dir']}",
        f"--coco_root={trained['coco_root']}",
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: --img_shape=[256, 256] contradicts {trained['ckpt']}, which was built with "
        "img_shape=[128, 128]; leave --img_shape out to use the file's value"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "option, given, stored",
    [
        ("--num_classes=5", "5", "4"),
        ("--fpn_channels=32", "32", "64"),
        ("--prior_scaling=[0.1,0.3]", "[0.1, 0.3]", "[0.1, 0.2]"),
    ],
)
def test_a_contradicting_option_names_both_values(trained, option, given, stored):
    from nasfpn.model_files.description import ModelDescriptionError, config_for_model

    key = option[2:].split("=")[0]
    with pytest.raises(ModelDescriptionError) as caught:
        config_for_model(make_config(option), trained["ckpt"])
    message = str(caught.value)
    assert f"--{key}={given} contradicts {trained['ckpt']}" in message and f"{key}={stored};" in message


@pytest.mark.slow
def test_a_contradicting_yaml_value_is_refused_and_an_equal_one_accepted(trained, tmp_path):
    from nasfpn.model_files.description import ModelDescriptionError, config_for_model

    config = tmp_path / "mine.yaml"
    config.write_text("backbone_depth: 50\n")
    with pytest.raises(
        ModelDescriptionError,
        match=r"--backbone_depth=50 contradicts .*built with "
        r"backbone_depth=18",
    ):
        config_for_model(make_config(f"--config_path={config}"), trained["ckpt"])
    config.write_text("backbone_depth: 18\nimg_shape: [128, 128]\n")
    cfg, _ = config_for_model(make_config(f"--config_path={config}"), trained["ckpt"])
    assert cfg.fpn_channels == 64 and cfg.num_classes == 4


@pytest.fixture(scope="module")
def onnx_export(trained):
    """export.py --file_format=ONNX of the trained checkpoint, no model option given."""
    done = run(
        trained,
        "export.py",
        f"--checkpoint_path={trained['ckpt']}",
        "--file_format=ONNX",
        f"--file_name={trained['base'] / 'described'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return str(trained["base"] / "described.onnx")


@pytest.mark.slow
def test_an_onnx_export_carries_the_description_and_evaluates_without_options(
    trained, reference, onnx_export
):
    import onnx
    from nasfpn.model_files.description import read_description

    ref_metrics, ref_predictions = reference
    path = onnx_export
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    assert json.loads(props["nasfpn_model"])["options"] == EXPECTED_OPTIONS
    assert read_description(path) == read_description(trained["ckpt"])
    metrics, predictions = evaluate(
        trained, "onnx", f"--model_path={path}", f"--anno_path={trained['pseudo']}"
    )
    # ONNX Runtime and MindSpore differ in float32 rounding (~1e-6 on scores); as in
    # test_eval_exported, the metrics agree to 1e-6 and the same detections are kept.
    for key in METRICS:
        assert metrics[key] == pytest.approx(ref_metrics[key], abs=1e-6), key
    assert len(predictions) == len(ref_predictions)


@pytest.mark.slow
def test_a_mindir_export_carries_the_description(trained):
    from nasfpn.inference.runtimes import open_runtime
    from nasfpn.model_files.description import read_description

    done = run(
        trained,
        "export.py",
        f"--checkpoint_path={trained['ckpt']}",
        f"--file_name={trained['base'] / 'described'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    path = str(trained["base"] / "described.mindir")
    assert read_description(path) == read_description(trained["ckpt"])
    assert open_runtime(path).input_shape == [1, 3, 128, 128]  # still a MINDIR MindSpore loads


@pytest.mark.slow
def test_infer_without_options_names_the_models_classes_and_category_ids(trained, tmp_path):
    image_dir = os.path.join(trained["coco_root"], "val2017")
    done = run(
        trained,
        "infer.py",
        f"--checkpoint_path={trained['ckpt']}",
        f"--image={image_dir}",
        f"--output_dir={tmp_path / 'out'}",
        "--score_threshold=0.1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / "detections.json") as f:
        results = json.load(f)
    assert results and {r["file_name"] for r in results} <= set(os.listdir(image_dir))
    ids = dict(zip(EXPECTED_CLASSES[1:], (1, 2, 3)))  # the training file's ids, carried by the model
    assert all(ids[r["category_name"]] == r["category_id"] for r in results)


@pytest.mark.slow
def test_the_310_twin_takes_the_input_size_from_the_export(trained, onnx_export, tmp_path):
    """The default img_shape is 640: without the export's description the twin would refuse it."""
    image_dir = os.path.join(trained["coco_root"], "val2017")
    done = run(
        trained,
        "infer_310_twin.py",
        f"--model_path={onnx_export}",
        f"--dataset_path={image_dir}",
        f"--result_path={tmp_path / 'result_Files'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    boxes = np.fromfile(
        tmp_path / "result_Files" / f"{sorted(os.listdir(image_dir))[0][:-4]}_0.bin", np.float32
    )
    anchors = 9 * sum((128 // s) ** 2 for s in (8, 16, 32, 64, 128))
    assert boxes.size == anchors * 4


# ---- without a network: the class rules ----------------------------------------------------------


def coco_with(categories):
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
        "annotations": [],
        "categories": [{"id": i, "name": n} for i, n in categories],
    }


def collector_for(tmp_path, categories, model_classes):
    from nasfpn.evaluation.scoring import DetectionCollector

    path = tmp_path / "anno.json"
    path.write_text(json.dumps(coco_with(categories)))
    return DetectionCollector(
        str(path), len(model_classes), model_classes=model_classes, model_source="model.ckpt"
    )


def test_eval_refuses_a_dataset_class_the_model_lacks(tmp_path):
    from nasfpn.data.coco_format import AnnotationError

    with pytest.raises(
        AnnotationError,
        match=r"anno.json: categories 'hexagon' are not classes of "
        r"model.ckpt \(its classes: 'circle', 'square'\)",
    ):
        collector_for(
            tmp_path, [(5, "circle"), (9, "hexagon"), (2, "square")], ("background", "circle", "square")
        )


def test_a_model_class_the_file_lacks_is_a_warning(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="nasfpn"):
        collector = collector_for(tmp_path, [(40, "square")], ("background", "circle", "square"))
    assert collector.to_category == {2: 40}
    assert "has no category for 1 class(es) of model.ckpt: 'circle'" in caplog.text


def test_a_release_style_checkpoint_describes_nothing(release_ckpt):
    from nasfpn.model_files.description import config_for_model, read_description

    cfg = make_config()
    assert read_description(release_ckpt) is None
    assert config_for_model(cfg, release_ckpt) == (cfg, None)


def test_values_the_user_did_not_set_come_from_the_file(tmp_path):
    from nasfpn.model_files.description import ModelDescription, apply_description

    model_cfg = make_config(*MODEL_ARGS)
    stored = ModelDescription.of_sections(model_cfg.model, model_cfg.anchors, EXPECTED_CLASSES, (1, 2, 3))
    cfg, kept = apply_description(make_config("--min_score=0.2", "--img_shape=[128,128]"), stored, "m.onnx")
    assert {key: getattr(cfg, key) for key in EXPECTED_OPTIONS} == EXPECTED_OPTIONS and not kept
    assert cfg.min_score == 0.2 and cfg.explicit_keys == {"min_score", "img_shape"}
    assert ModelDescription.from_json(stored.to_json(), "m.onnx") == stored


@pytest.mark.slow
def test_fine_tuning_takes_the_parameter_options_and_leaves_the_input_size_to_the_run(trained, caplog):
    import logging
    from nasfpn.model_files.description import ModelDescriptionError
    from nasfpn.training.model_record import apply_pretrained_description, training_classes

    log = logging.getLogger("nasfpn")
    ckpt = trained["ckpt"]
    with caplog.at_level("INFO", logger="nasfpn"):
        cfg, stored = apply_pretrained_description(
            make_config(f"--pre_trained={ckpt}", "--img_shape=[256,256]"), log
        )
    assert (cfg.backbone_depth, cfg.fpn_channels, cfg.num_classes, cfg.img_shape) == (18, 64, 4, [256, 256])
    assert f"fine-tuning with img_shape=[256, 256] ({ckpt} was trained with [128, 128])" in caplog.text
    # No annotation file at the default coco_root: the classes come from the pre-trained file.
    assert training_classes(cfg.model, cfg.data, cfg.filter_weight, stored, log) == (
        list(EXPECTED_CLASSES),
        [1, 2, 3],
    )
    with pytest.raises(ModelDescriptionError, match=r"--num_classes=7 contradicts .*num_classes=4"):
        apply_pretrained_description(make_config(f"--pre_trained={ckpt}", "--num_classes=7"), log)
    # --filter_weight replaces the class head: the new run's class count is its own.
    cfg, _ = apply_pretrained_description(
        make_config(f"--pre_trained={ckpt}", "--filter_weight=True", "--num_classes=7"), log
    )
    assert (cfg.num_classes, cfg.backbone_depth) == (7, 18)
