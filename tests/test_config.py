"""Config loading: defaults, typed overrides, aliases, unknown keys, derived-key checks."""

import os

import pytest
import yaml

from nasfpn.config.flat import ConfigError, DEFAULT_CONFIG_PATH, load_config, read_choices
from nasfpn.config.sections import derived_sizes
from tests.conftest import REPO_ROOT

DEMO_CONFIG = os.path.join(REPO_ROOT, "configs", "demo_cpu.yaml")


def test_defaults_are_the_release_values():
    cfg = load_config([])
    assert cfg.img_shape == [640, 640]
    assert cfg.num_classes == 81 and len(cfg.coco_classes) == 81
    assert cfg.coco_classes[1] == "person" and cfg.coco_classes[80] == "toothbrush"
    assert (cfg.lr, cfg.lr_init, cfg.lr_end_rate) == (0.1, 1e-6, 5e-3)
    assert [
        cfg.warmup_epochs1,
        cfg.warmup_epochs2,
        cfg.warmup_epochs3,
        cfg.warmup_epochs4,
        cfg.warmup_epochs5,
    ] == [2, 5, 23, 60, 160]
    assert (cfg.min_score, cfg.nms_threshold, cfg.max_boxes) == (0.1, 0.6, 100)
    assert derived_sizes(cfg.model, cfg.anchors)["num_retinanet_boxes"] == 76725
    assert derived_sizes(cfg.model, cfg.anchors)["feature_size"] == [80, 40, 20, 10, 5]


def test_every_key_has_help_text():
    with open(DEFAULT_CONFIG_PATH) as f:
        values, help_texts = list(yaml.safe_load_all(f))
    missing = [k for k in values if not str(help_texts.get(k, "")).strip()]
    assert not missing, f"keys without help text: {missing}"
    assert not set(help_texts) - set(values), "help for keys that do not exist"


def test_command_line_overrides_are_typed():
    cfg = load_config(
        [
            "--img_shape=[256,256]",
            "--lr",
            "0.01",
            "--distribute=True",
            "--lr_init=1e-5",
            "--aspect_ratios=[1,2]",
            "--batch_size=4",
        ]
    )
    assert cfg.img_shape == [256, 256] and all(isinstance(v, int) for v in cfg.img_shape)
    assert cfg.lr == 0.01 and cfg.lr_init == 1e-5 and isinstance(cfg.lr_init, float)
    assert cfg.distribute is True and cfg.batch_size == 4
    assert cfg.aspect_ratios == [1.0, 2.0] and isinstance(cfg.aspect_ratios[0], float)


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--batch_size=four", "--batch_size: expected an integer"),
        ("--img_shape=640", "--img_shape: expected a list of integers like \\[640, 640\\]"),
        ("--img_shape=[256.5,256]", "--img_shape: expected a list"),
        ("--distribute=maybe", "--distribute: expected true/false"),
        ("--device_target=TPU", r"--device_target: expected one of \['Ascend', 'GPU', 'CPU'\]"),
        ("--backbone_depth=20", r"--backbone_depth: expected one of \[18, 34, 50, 101\]"),
        ("--img_shape=[300,300]", "must be divisible by the largest step"),
        ("--num_retinanet_boxes=76000", "does not match the value derived"),
        ("--anchor_size=[32,64]", "expected 5 values"),
        (
            "--draw_score_threshold=1.5",
            r"--draw_score_threshold: expected a number in \[0, 1\] or null, got 1.5",
        ),
        ("--draw_score_threshold=[0.5]", "--draw_score_threshold: expected a number"),
    ],
)
def test_bad_values_are_rejected_with_the_key(arg, message):
    with pytest.raises(ConfigError, match=message):
        load_config([arg])


def test_unknown_key_lists_close_matches():
    with pytest.raises(ConfigError, match=r"unknown config key 'img_shap'.*did you mean img_shape"):
        load_config(["--img_shap=[256,256]"])


def test_release_misspellings_are_aliases():
    cfg = load_config(["--nms_thershold=0.5", "--match_thershold=0.4"])
    assert cfg.nms_threshold == 0.5 and cfg.match_threshold == 0.4


def test_derived_release_keys_accepted_when_consistent():
    cfg = load_config(["--num_retinanet_boxes=76725", "--feature_size=[80,40,20,10,5]"])
    assert cfg.num_retinanet_boxes == 76725
    small = load_config(["--img_shape=[256,256]"])
    assert derived_sizes(small.model, small.anchors)["num_retinanet_boxes"] == 9 * (
        32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2
    )


def test_config_file_then_command_line(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("img_shape: [384, 384]\nbatch_size: 2\nnms_thershold: 0.45\n")
    cfg = load_config([f"--config_path={path}", "--batch_size=3"])
    assert cfg.img_shape == [384, 384] and cfg.batch_size == 3 and cfg.nms_threshold == 0.45
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'batch_sise'.*batch_size"):
        load_config([f"--config_path={bad}"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([f"--config_path={tmp_path / 'absent.yaml'}"])


def test_replace_validates():
    cfg = load_config([])
    small = cfg.replace(img_shape=[128, 128])
    assert small.img_shape == [128, 128] and cfg.img_shape == [640, 640]
    with pytest.raises(ConfigError, match="unknown config key"):
        cfg.replace(imgshape=[1, 2])


def test_choices_are_read_from_comments_next_to_the_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        'mode: "a"  # choices: [a, b]\ndepth: 50 # choices: [18, 50]\nfree: 1  # a note\n'
        '---\nmode: "not read: # choices: [x]"\n'
    )
    assert read_choices(str(path)) == {"mode": ("a", "b"), "depth": (18, 50)}
    assert load_config([]).choices["file_format"] == ("MINDIR", "AIR", "ONNX")


def test_replace_keeps_the_choices():
    with pytest.raises(ConfigError, match="--amp_level: expected one of"):
        load_config([]).replace(amp_level="O4")


@pytest.mark.parametrize("script", ["eval.py", "create_data.py"])
def test_help_names_the_script_and_prints_its_docstring(script):
    import os
    import subprocess
    import sys

    root = REPO_ROOT
    run = subprocess.run(
        [sys.executable, script, "--help"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"usage: python {script} [--config_path=FILE] [--key=value ...]"
    with open(os.path.join(root, script)) as f:
        first_doc_line = f.readline().strip('"\n')
    assert lines[2] == first_doc_line
    assert "  --device_target (default: CPU; one of Ascend, GPU, CPU)" in lines


def test_the_demo_config_names_no_output_paths():
    """Commands run with configs/demo_cpu.yaml write where they would without it, so they never
    overwrite the demo's outputs (scripts/run_demo.sh passes outputs/demo/... itself)."""

    demo = load_config([f"--config_path={DEMO_CONFIG}"])
    default = load_config([])
    assert demo.img_shape != default.img_shape  # the file was read
    for key in ("save_checkpoint_path", "eval_output_dir", "file_name", "output_dir", "result_path"):
        assert getattr(demo, key) == getattr(default, key), key


def test_help_is_raised_for_the_entry_point_not_printed_and_shows_the_files_values(capsys):
    from nasfpn.config.flat import HelpRequested

    with pytest.raises(HelpRequested) as info:
        load_config(["--lr=0.5", "--help"])
    assert capsys.readouterr().out == ""
    lines = info.value.text.splitlines()
    assert lines[0].startswith("usage: ") and "  --lr (default: 0.1)" in lines


def test_the_short_recipe_config_is_valid_and_is_the_recipe():
    """configs/nasfpn_r50_50e.yaml (docs/training.md#the-short-recipe): 50 epochs of 8 x 8 images,
    lr 0.08 with 1000 warm-up steps from 0.008, x0.1 at epochs 30 and 40, scale jitter 0.8-1.2 in
    place of the IoU crop, all-device positives, synchronised BN (Ascend)."""
    import numpy as np
    from nasfpn.training.lr_schedule import lr_schedule_from_config, schedule_warnings

    recipe_file = os.path.join(os.path.dirname(DEMO_CONFIG), "nasfpn_r50_50e.yaml")
    recipe = load_config([f"--config_path={recipe_file}"])
    expected = dict(
        device_target="Ascend",
        epoch_size=50,
        batch_size=8,
        lr=0.08,
        lr_scale_by_batch=False,
        lr_schedule="step",
        warmup_ratio=0.1,
        warmup_iters=1000,
        lr_decay_epochs=[30, 40],
        lr_decay_factor=0.1,
        scale_jitter=True,
        scale_jitter_min=0.8,
        scale_jitter_max=1.2,
        train_random_crop=False,
        normalize_positives_over_devices=True,
        sync_bn=True,
        img_shape=[640, 640],
        backbone_depth=50,
        fpn_stages=7,
        fpn_channels=256,
    )
    assert {key: getattr(recipe, key) for key in expected} == expected
    # COCO train2017 without its empty images (117266) over 64 images a step: 1832 steps an epoch
    spe = 117266 // 64
    lr = lr_schedule_from_config(recipe.schedule, spe, 64)
    assert schedule_warnings(recipe.schedule, spe, 64) == []
    at = {step: float(lr[step]) for step in (0, 1000, 30 * spe - 1, 30 * spe, 40 * spe, 50 * spe - 1)}
    # rtol: the float64 formula rounded once to float32 (6e-8)
    np.testing.assert_allclose(list(at.values()), [0.008, 0.08, 0.08, 0.008, 0.0008, 0.0008], rtol=1e-6)
