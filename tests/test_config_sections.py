"""The configuration's typed sections (nasfpn/config/sections.py): every flat key in exactly one
section, the sections' values and types from a literal config, each section's checks with the
loader's one-line messages, and the layering rule that below the entry points and builders no
function takes the whole config."""

import ast
import dataclasses

import pytest
import yaml

from nasfpn.config.flat import DEFAULT_CONFIG_PATH, ConfigError, load_config
from nasfpn.config.sections import SECTIONS, AnchorConfig, ModelConfig, section_of
from tests.test_layering import src_modules

# The entry points: each command's run(cfg) with the Config of its command line (nasfpn/commands/,
# `nasfpn <command>` and the root scripts; the browser's python -m nasfpn.data.browse).
ENTRY_POINTS = {
    "nasfpn.commands.convert:run",
    "nasfpn.commands.train:run",
    "nasfpn.commands.eval:run",
    "nasfpn.commands.eval:evaluate_exits",  # eval.py --eval_exits: the command run once per exit
    "nasfpn.commands.export:run",
    "nasfpn.commands.export:export_model",  # run's work, also nasfpn.export()'s
    "nasfpn.commands.infer:run",
    "nasfpn.commands.infer_310_twin:run",
    "nasfpn.commands.postprocess:run",
    "nasfpn.data.browse:run",
}
# Below the entry points, the functions of nasfpn/ that take the whole Config (a parameter named
# cfg or config). Everything else takes a section or plain arguments
# (docs/architecture.md#configuration-sections).
WHOLE_CONFIG_FUNCTIONS = {
    # entry-point glue: what the commands call with the Config they loaded
    "nasfpn.training.run:train_from_config",
    "nasfpn.evaluation.run:evaluate_model",
    "nasfpn.inference.detect_images:detect_from_config",
    "nasfpn.deploy.app310_twin:run_twin",
    "nasfpn.deploy.result_files:evaluate_result_files",
    "nasfpn.jobs.modelarts:modelarts_job",
    # builders: one component from the sections it needs
    "nasfpn.inference.build:build_inference_network",
    "nasfpn.inference.open_model:open_model",
    "nasfpn.evaluation.during_training:make_evaluator",
    "nasfpn.training.trainer:Trainer.__init__",
    # the Config completed from a model file or the MindRecord's dataset record: Config in, Config
    # out (its explicit_keys decide)
    "nasfpn.model_files.description:apply_description",
    "nasfpn.model_files.description:config_for_model",
    "nasfpn.training.model_record:apply_pretrained_description",
    "nasfpn.data.dataset_record:apply_record_classes",
    "nasfpn.training.model_record:apply_dataset_classes",
}
WHOLE_CONFIG_PARAMETERS = {"cfg", "config"}
MOST_WHOLE_CONFIG_FUNCTIONS = 15


def default_keys():
    with open(DEFAULT_CONFIG_PATH, encoding="utf-8") as f:
        return list(next(yaml.safe_load_all(f)))


def test_every_key_of_the_default_config_is_in_exactly_one_section():
    owners = {}
    for section in SECTIONS:
        for key in section.keys():
            owners.setdefault(key, []).append(section.NAME)
    shared = {key: names for key, names in owners.items() if len(names) > 1}
    assert not shared, f"keys in several sections: {shared}"
    keys = default_keys()
    homeless, unknown = sorted(set(keys) - set(owners)), sorted(set(owners) - set(keys))
    assert not homeless, f"keys of default_config.yaml in no section (nasfpn/config/sections.py): {homeless}"
    assert not unknown, f"section fields that are no key of default_config.yaml: {unknown}"
    assert len(keys) == sum(len(section.keys()) for section in SECTIONS)


def test_each_config_gives_each_section_under_its_name():
    cfg = load_config([])
    for section in SECTIONS:
        got = getattr(cfg, section.NAME)
        assert type(got) is section
        assert {key: getattr(got, key) for key in section.keys()} == {
            key: getattr(cfg, key) for key in section.keys()
        }
    assert section_of("img_shape") is ModelConfig and section_of("steps") is AnchorConfig
    with pytest.raises(KeyError):
        section_of("no_such_key")


def test_a_literal_config_lands_in_its_sections(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "img_shape: [256, 384]\n"
        "num_classes: 3\n"
        "coco_classes: [background, cat, dog]\n"
        "aspect_ratios: [1.0]\n"
        "num_scales: 2\n"
        "mindrecord_dir: /data/mr\n"
        "scale_jitter: true\n"
        "lr_schedule: step\n"
        "lr_decay_epochs: [3, 5]\n"
        "epoch_size: 6\n"
        "min_score: 0.05\n"
        "export_batch_size: 2\n"
        "tta_scales: [0.5, 1.5]\n"
        "device_target: CPU\n"
        "overwrite: true\n"
    )
    cfg = load_config([f"--config_path={path}", "--batch_size=2", "--lr=0.02"])
    assert cfg.model.img_shape == [256, 384] and cfg.model.num_classes == 3
    assert cfg.model.class_names() == ["background", "cat", "dog"]
    assert cfg.anchors.per_cell == 1 * 2
    spec = cfg.anchors.spec(cfg.model.img_shape)
    assert (spec.img_shape, spec.steps, spec.anchor_sizes) == (
        (256, 384),
        (8, 16, 32, 64, 128),
        (32, 64, 128, 256, 512),
    )
    # 256 x 384 at strides 8..128: (32x48 + 16x24 + 8x12 + 4x6 + 2x3) cells x 2 anchors
    assert spec.num_anchors == 2 * (32 * 48 + 16 * 24 + 8 * 12 + 4 * 6 + 2 * 3)
    assert cfg.data.mindrecord_dir == "/data/mr" and cfg.augmentation.scale_jitter is True
    assert (cfg.training.batch_size, cfg.schedule.lr, cfg.schedule.epoch_size) == (2, 0.02, 6)
    assert cfg.schedule.lr_schedule == "step" and cfg.schedule.lr_decay_epochs == [3, 5]
    assert cfg.schedule.release_warmup_epochs == [2, 5, 23, 60, 160]
    assert cfg.postprocess == type(cfg.postprocess)(min_score=0.05, nms_threshold=0.6, max_boxes=100)
    assert cfg.export.export_batch_size == 2 and cfg.inference.tta_scales == [0.5, 1.5]
    assert cfg.device.device_target == "CPU" and cfg.job.overwrite is True
    assert isinstance(cfg.schedule.lr, float) and isinstance(cfg.training.batch_size, int)


def test_sections_are_frozen_and_follow_the_config():
    cfg = load_config([])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.training.batch_size = 3
    assert cfg.training is cfg.training  # built once
    changed = cfg.replace(batch_size=3)
    assert changed.training.batch_size == 3 and cfg.training.batch_size == 16
    cfg.pre_trained = "weights.ckpt"  # a value set on the Config itself is seen by its section
    assert cfg.training.pre_trained == "weights.ckpt"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bn_momentum=1"], "--bn_momentum: expected in [0, 1), got 1.0"),
        (["--num_classes=1"], "--num_classes: expected >= 2 (background + classes), got 1"),
        (
            ["--steps=[8,16,32,64]", "--anchor_size=[32,64,128,256]"],
            "--steps: NAS-FPN has 5 levels P3..P7, got [8, 16, 32, 64]",
        ),
        (["--workers=0"], "--num_parallel_workers: expected >= 1, got 0"),
        (
            ["--scale_jitter=true", "--scale_jitter_min=1.5"],
            "--scale_jitter_min=1.5 is above --scale_jitter_max=1.2; expected min <= max",
        ),
        (
            ["--backbone_pretrained=r50.ckpt", "--pre_trained=det.ckpt"],
            "--backbone_pretrained=r50.ckpt and --pre_trained=det.ckpt both set: pre_trained is a "
            "whole detector, its backbone included; give one",
        ),
        (["--lr=0"], "--lr: expected > 0, got 0.0"),
        (
            ["--lr_decay_epochs=[40,30]"],
            "--lr_decay_epochs: expected increasing epoch numbers >= 1, got [40, 30]",
        ),
        (
            ["--global_step=5", "--pre_trained_epoch_size=1"],
            "--global_step=5 and --pre_trained_epoch_size=1 both set where the schedule starts; give one",
        ),
        (["--analysis_score_threshold=2"], "--analysis_score_threshold: expected in [0, 1], got 2.0"),
        (["--export_max_detections=0"], "--export_max_detections: expected >= 1, got 0"),
        (
            ["--runtime=onnxruntime", "--precision=bf16"],
            "--precision=bf16: ONNX Runtime runs float32 models in f32; bf16 is an OpenVINO precision "
            "(--runtime=openvino)",
        ),
        (
            ["--checkpoint_url=obs://b/c.ckpt"],
            "--checkpoint_url=obs://b/c.ckpt: this is the release's ModelArts location of a checkpoint "
            "(copied to load_path with --enable_modelarts=True); the download URL of --hub is --hub_url",
        ),
        (
            ["--scale_jitter=true", "--img_shape=[320,320]"],
            "--img_shape: the scale-jitter crop size [320, 320] (--scale_jitter=true) must be divisible "
            "by the largest step (128)",
        ),
        (
            ["--nasfpn_input_channels=[256,512,1024]"],
            "--nasfpn_input_channels: [256, 512, 1024] does not match the value derived from "
            "backbone_depth ([512, 1024, 2048]); leave it null",
        ),
    ],
)
def test_a_bad_value_gives_one_line_naming_the_key(args, message):
    with pytest.raises(ConfigError) as caught:
        load_config(args)
    assert str(caught.value) == message


def test_the_sync_bn_check_of_training_names_the_device():
    cfg = load_config(["--sync_bn=true"])  # loads: evaluation and export use plain BatchNorm
    with pytest.raises(ConfigError) as caught:
        cfg.training.check_sync_bn(cfg.device.device_target)
    assert str(caught.value) == (
        "--sync_bn=true: synchronised BatchNorm (nn.SyncBatchNorm) runs on Ascend only, not on "
        "device_target CPU; set --sync_bn=false"
    )
    cfg.training.check_sync_bn("Ascend")


def whole_config_functions(source, module_name):
    """'module:Qualified.name' of each function (methods and nested ones included) in `source`
    with a parameter named cfg or config."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = child.args
                names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
                if names & WHOLE_CONFIG_PARAMETERS:
                    found.append(f"{module_name}:{prefix}{child.name}")
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_whole_config_functions_are_found_in_methods_and_nested_functions():
    source = (
        "def a(cfg): pass\n"
        "def b(model, *, config=None): pass\n"
        "def c(model): pass\n"
        "class T:\n    def __init__(self, cfg):\n        def inner(cfg): pass\n"
    )
    assert whole_config_functions(source, "m") == ["m:a", "m:b", "m:T.__init__", "m:T.__init__.inner"]


def test_below_the_entry_points_and_builders_no_function_takes_the_whole_config():
    found = set()
    for name, _, path in src_modules():
        with open(path, encoding="utf-8") as f:
            found.update(whole_config_functions(f.read(), name))
    allowed = ENTRY_POINTS | WHOLE_CONFIG_FUNCTIONS
    added, gone = sorted(found - allowed), sorted(allowed - found)
    assert not added, (
        f"{added} take the whole config: give them the section(s) they read "
        "(nasfpn/config/sections.py) or plain arguments"
    )
    assert not gone, f"{gone} no longer take the whole config: remove them from this file's lists"
    assert len(WHOLE_CONFIG_FUNCTIONS) <= MOST_WHOLE_CONFIG_FUNCTIONS
