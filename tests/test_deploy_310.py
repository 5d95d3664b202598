"""Ascend 310 deployment (docs/architecture.md#export-and-the-ascend-310-files): the Python twin of
the C++ app writes the app's files, MINDIR and ONNX agree, postprocess.py on those files gives
eval.py's mAP, and run_infer_310.sh fails early and clearly on bad arguments.

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
from tests.helpers.cli import ENV, run_command
from tests.helpers.cli import run_shell_script as run_script  # the 310 scripts are bash
from tests.helpers.modes import switch_mode

NUM_IMAGES = 4
# TINY anchors, computed here independently of nasfpn/ops/boxes.py: levels 16,8,4,2,1 squared x 9 per cell.
TINY_ANCHORS = (16**2 + 8**2 + 4**2 + 2**2 + 1) * 9
NUM_CLASSES_TINY = 4  # background + the embedded set's 3 shapes


def run_cli(args, cwd=REPO_ROOT, timeout=600):
    return run_command([sys.executable, *args], cwd, timeout)


# Embedded shapes: 3 categories -> 4 classes. Every entry point gets the same overrides.
ARGS = (*TINY, "--num_classes=4")
RENAMED = "shapes_second.jpg"  # a non-numeric file name (release bug: get_imageId_from_fileName)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    """4 val images (160x160: the boxes must be rescaled from 128x128) in COCO layout; the second
    image renamed to a non-numeric name in the folder and in the annotation file."""
    from nasfpn.data.embedded import generate_embedded_dataset

    root = str(tmp_path_factory.mktemp("coco") / "shapes")
    generate_embedded_dataset(root, num_train=1, num_val=NUM_IMAGES, size=160, seed=3)
    anno_path = os.path.join(root, "annotations", "instances_val2017.json")
    with open(anno_path) as f:
        anno = json.load(f)
    second = sorted(anno["images"], key=lambda im: im["file_name"])[1]
    os.rename(os.path.join(root, "val2017", second["file_name"]), os.path.join(root, "val2017", RENAMED))
    second["file_name"] = RENAMED
    with open(anno_path, "w") as f:
        json.dump(anno, f)
    return root


@pytest.fixture(scope="module")
def paths(coco_root):
    return {
        "images": os.path.join(coco_root, "val2017"),
        "anno": os.path.join(coco_root, "annotations", "instances_val2017.json"),
    }


def overfit_tiny_network(cfg, image_dir, anno_path, steps=60):
    """The TINY detector trained for `steps` full-batch Adam steps on the test images themselves, so
    that the mAP compared below is far from 0 (a random network scores AP 0 everywhere). Measured
    on these images: AP 0.13 after 40 steps, 0.50 after 60, 0.82 after 80; 60 sits in the middle of
    the (0.2, 1) that test_postprocess_gives_eval_map asks for."""
    import mindspore.nn as nn
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from nasfpn.data.coco_format import class_map, load_coco_json
    from nasfpn.data.transforms import decode_image, preprocess_image
    from nasfpn.model import RetinaNetInfer, RetinaNetWithLoss, build_detector

    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    matcher = AnchorMatcher(anchors, cfg.match_threshold, tuple(cfg.prior_scaling))
    coco = load_coco_json(anno_path)
    to_class = class_map(coco).category_to_class
    columns = [[], [], [], []]
    for image in coco["images"]:
        rgb = decode_image(os.path.join(image_dir, image["file_name"]))
        h, w = rgb.shape[:2]
        objects = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        boxes = np.array(
            [[y / h, x / w, (y + bh) / h, (x + bw) / w] for x, y, bw, bh in (a["bbox"] for a in objects)],
            np.float32,
        )
        labels = np.array([to_class[a["category_id"]] for a in objects], np.int32)
        for column, value in zip(
            columns, (preprocess_image(rgb, cfg.img_shape), *matcher.encode(boxes, labels))
        ):
            column.append(value)
    inputs = [ms.Tensor(np.stack(column)) for column in columns]
    detector = build_detector(cfg.model, cfg.anchors)
    loss = RetinaNetWithLoss(detector, cfg.num_classes, cfg.gamma, cfg.alpha)
    train_step = nn.TrainOneStepCell(loss, nn.Adam(loss.trainable_params(), learning_rate=1e-3))
    for _ in range(steps):
        train_step(*inputs)
    return RetinaNetInfer(detector, anchors.cycxhw, tuple(cfg.prior_scaling))


@pytest.fixture(scope="module")
def checkpoint_and_models(paths, tmp_path_factory, request):
    """A checkpoint of the briefly trained TINY network, and its MINDIR and ONNX exports."""
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network

    switch_mode(request, ms.GRAPH_MODE)
    ms.set_seed(7)
    folder = tmp_path_factory.mktemp("models")
    cfg = make_config(*ARGS)
    trained = overfit_tiny_network(cfg, paths["images"], paths["anno"])
    ckpt = save_checkpoint_atomic(trained, str(folder / "tiny.ckpt"))
    net = build_inference_network(cfg, ckpt)  # strict reload: the same names as a release file
    models = {
        fmt: export_network(net, str(folder / "tiny"), fmt, 1, (128, 128)) for fmt in ("MINDIR", "ONNX")
    }
    return ckpt, models


@pytest.fixture(scope="module")
def twin_outputs(checkpoint_and_models, paths, tmp_path_factory):
    """infer_310_twin.py run as a user runs it, once per model format, each in its own folder."""
    _, models = checkpoint_and_models
    outputs = {}
    for fmt, model in models.items():
        work = tmp_path_factory.mktemp(f"twin_{fmt.lower()}")
        run = run_cli(
            [
                os.path.join(REPO_ROOT, "infer_310_twin.py"),
                f"--model_path={model}",
                f"--dataset_path={paths['images']}",
                *ARGS,
            ],
            cwd=str(work),
        )
        assert run.returncode == 0, run.stderr[-3000:]
        outputs[fmt] = work
    return outputs


def image_stems(folder):
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_twin_writes_the_310_app_files(twin_outputs, paths, fmt):
    work = twin_outputs[fmt]
    stems = image_stems(paths["images"])
    assert len(stems) == NUM_IMAGES and RENAMED[:-4] in stems
    expected = sorted(f"{s}_{i}.bin" for s in stems for i in (0, 1))
    assert sorted(os.listdir(work / "result_Files")) == expected  # nothing else, no .tmp left over
    for stem in stems:
        assert (work / "result_Files" / f"{stem}_0.bin").stat().st_size == TINY_ANCHORS * 4 * 4
        assert (work / "result_Files" / f"{stem}_1.bin").stat().st_size == TINY_ANCHORS * NUM_CLASSES_TINY * 4
    line = (work / "time_Result" / "test_perform_static.txt").read_text()
    words = line.split()
    assert line.startswith("NN inference cost average time: ") and line.endswith("\n")
    assert words[-1] == str(NUM_IMAGES) and float(words[5]) > 0 and words[6] == "ms"


@pytest.mark.slow
def test_twin_bins_are_the_network_outputs(twin_outputs, checkpoint_and_models, paths):
    """The MINDIR run's files hold the checkpoint network's outputs on images preprocessed here
    independently (cv2 decode, bilinear resize, ImageNet mean/std, CHW)."""
    import cv2
    from nasfpn.inference.build import build_inference_network

    ckpt, _ = checkpoint_and_models
    ms.set_context(mode=ms.GRAPH_MODE)
    net = build_inference_network(make_config(*ARGS), ckpt)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    names = sorted(os.listdir(paths["images"]))
    rgb = [cv2.imread(os.path.join(paths["images"], n))[:, :, ::-1] for n in names]
    batch = np.stack(
        [
            ((cv2.resize(im, (128, 128), interpolation=cv2.INTER_LINEAR) - mean) / std).transpose(2, 0, 1)
            for im in rgb
        ]
    ).astype(np.float32)
    boxes, scores = (t.asnumpy() for t in net(ms.Tensor(batch)))
    result_dir = twin_outputs["MINDIR"] / "result_Files"
    for i, name in enumerate(names):
        stem = os.path.splitext(name)[0]
        got_boxes = np.fromfile(result_dir / f"{stem}_0.bin", np.float32).reshape(-1, 4)
        got_scores = np.fromfile(result_dir / f"{stem}_1.bin", np.float32).reshape(-1, NUM_CLASSES_TINY)
        np.testing.assert_allclose(got_boxes, boxes[i], atol=1e-5, rtol=0)
        np.testing.assert_allclose(got_scores, scores[i], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_onnx_and_mindir_bins_agree(twin_outputs):
    mindir_dir, onnx_dir = (twin_outputs[f] / "result_Files" for f in ("MINDIR", "ONNX"))
    names = sorted(os.listdir(mindir_dir))
    assert names == sorted(os.listdir(onnx_dir))
    for name in names:
        a = np.fromfile(mindir_dir / name, np.float32)
        b = np.fromfile(onnx_dir / name, np.float32)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def eval_run(checkpoint_and_models, coco_root, tmp_path_factory):
    """create_data.py (eval MindRecord of the same images) + eval.py on the same checkpoint."""
    ckpt, _ = checkpoint_and_models
    work = tmp_path_factory.mktemp("eval")
    run = run_cli(
        [
            "create_data.py",
            "--create_dataset=coco",
            f"--coco_root={coco_root}",
            f"--mindrecord_dir={work / 'mindrecord'}",
            "--is_training=False",
            "--num_shards=1",
            *ARGS,
        ]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    run = run_cli(
        [
            "eval.py",
            f"--checkpoint_path={ckpt}",
            f"--mindrecord_dir={work / 'mindrecord'}",
            f"--coco_root={coco_root}",
            f"--eval_output_dir={work / 'out'}",
            *ARGS,
        ]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return work / "out"


@pytest.fixture(scope="module")
def postprocess_run(twin_outputs, paths, tmp_path_factory):
    out = tmp_path_factory.mktemp("postprocess")
    run = run_cli(
        [
            "postprocess.py",
            f"--result_path={twin_outputs['MINDIR'] / 'result_Files'}",
            f"--dataset_path={paths['images']}",
            f"--anno_path={paths['anno']}",
            f"--eval_output_dir={out}",
            *ARGS,
        ]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run.stdout


@pytest.mark.slow
def test_postprocess_gives_eval_map(postprocess_run, eval_run):
    """Same checkpoint, same images: the 310 path (twin .bin files -> postprocess.py) and eval.py
    (MindRecord -> network) give the same detections and the same 12 COCO numbers."""
    out, stdout = postprocess_run
    with open(out / "predictions.json") as f:
        from_bins = json.load(f)
    with open(eval_run / "predictions.json") as f:
        from_eval = json.load(f)
    assert len(from_bins) > 0

    def canonical(detections):  # the result fields (pycocotools may add area/id to the dicts)
        return sorted((d["image_id"], d["category_id"], -d["score"], d["bbox"]) for d in detections)

    assert canonical(from_bins) == canonical(from_eval)
    assert len({d["image_id"] for d in from_bins}) == NUM_IMAGES
    with open(out / "metrics.json") as f:
        bins_metrics = json.load(f)
    with open(eval_run / "metrics.json") as f:
        eval_metrics = json.load(f)
    assert bins_metrics["num_images"] == eval_metrics["num_images"] == NUM_IMAGES
    assert 0.2 < bins_metrics["AP"] < 1  # a trained network: the comparison is not 0 == 0
    for key_name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"):
        assert bins_metrics[key_name] == pytest.approx(eval_metrics[key_name], abs=1e-6)
    assert f"= {bins_metrics['AP']:.4f}" in stdout.splitlines()[0]


@pytest.mark.slow
def test_run_infer_twin_script_end_to_end(checkpoint_and_models, paths, postprocess_run, tmp_path):
    """scripts/run_infer_twin.sh with the ONNX model: logs and files in OUT_DIR, the same table."""
    _, models = checkpoint_and_models
    out = tmp_path / "twin_out"
    run = run_script(
        ["scripts/run_infer_twin.sh", models["ONNX"], paths["images"], paths["anno"], *ARGS],
        timeout=300,
        OUT_DIR=str(out),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"[twin] logs and results in {out}" in run.stdout
    assert len(os.listdir(out / "result_Files")) == 2 * NUM_IMAGES
    table = [line for line in run.stdout.splitlines() if line.lstrip().startswith("AP") or "AR @" in line]
    expected = [
        line for line in postprocess_run[1].splitlines() if line.strip() and not line.startswith("mAP:")
    ]
    assert len(table) == 12 and table == expected  # ONNX .bin files, same 4-decimal COCO numbers
    assert run.stdout.strip().splitlines()[-1].startswith("mAP: ")  # the release's last line
    assert (out / "acc.log").read_text().count(" = ") == 12
    assert (out / "infer.log").exists() and (out / "predictions.json").exists()


@pytest.mark.slow
def test_run_infer_twin_script_reads_relative_paths_from_the_callers_directory(
    checkpoint_and_models, paths, postprocess_run, tmp_path
):
    """Relative MODEL_PATH, OUT_DIR and --config_path (and the config's own keys) mean the caller's
    directory, not the repository or OUT_DIR."""
    _, models = checkpoint_and_models
    shutil.copy(models["ONNX"], tmp_path / "model.onnx")
    (tmp_path / "cfg").mkdir()
    overrides = dict(arg[2:].split("=", 1) for arg in ARGS)
    (tmp_path / "cfg" / "tiny.yaml").write_text("".join(f"{k}: {v}\n" for k, v in overrides.items()))
    run = subprocess.run(
        [
            "bash",
            os.path.join(REPO_ROOT, "scripts", "run_infer_twin.sh"),
            "model.onnx",
            paths["images"],
            paths["anno"],
            "--config_path=cfg/tiny.yaml",
        ],
        cwd=str(tmp_path),
        env={**ENV, "OUT_DIR": "out"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(os.listdir(tmp_path / "out" / "result_Files")) == 2 * NUM_IMAGES
    table = [line for line in run.stdout.splitlines() if line.lstrip().startswith("AP") or "AR @" in line]
    assert table == [
        line for line in postprocess_run[1].splitlines() if line.strip() and not line.startswith("mAP:")
    ]


@pytest.mark.slow
def test_twin_refuses_bad_inputs(checkpoint_and_models, paths, tmp_path, monkeypatch):
    import infer_310_twin
    from nasfpn.config.flat import ConfigError

    _, models = checkpoint_and_models
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match="--model_path: expected an exported .mindir, .onnx or OpenVINO .xml file"
    ):
        infer_310_twin.main([f"--dataset_path={paths['images']}", *ARGS])
    with pytest.raises(FileNotFoundError, match="image folder not found: .*no_such_folder"):
        infer_310_twin.main(
            [f"--model_path={models['ONNX']}", f"--dataset_path={tmp_path / 'no_such_folder'}", *ARGS]
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .jpg/.jpeg/.png/.bmp files in .*empty"):
        infer_310_twin.main([f"--model_path={models['ONNX']}", f"--dataset_path={tmp_path / 'empty'}", *ARGS])
    (tmp_path / "dup").mkdir()
    for name in ("a.jpg", "a.png"):
        shutil.copy(os.path.join(paths["images"], RENAMED), tmp_path / "dup" / name)
    with pytest.raises(ValueError, match=r"share the stem\(s\) \['a'\]"):
        infer_310_twin.main([f"--model_path={models['ONNX']}", f"--dataset_path={tmp_path / 'dup'}", *ARGS])
    assert not (tmp_path / "result_Files").exists()  # refused before anything was written


# ---- postprocess.py: bad inputs name the file and what was expected --------------------------


@pytest.fixture()
def copied_run(twin_outputs, paths, tmp_path):
    """A private copy of the MINDIR run's result_Files and of the image folder, free to damage."""
    results = tmp_path / "result_Files"
    images = tmp_path / "images"
    shutil.copytree(twin_outputs["MINDIR"] / "result_Files", results)
    shutil.copytree(paths["images"], images)
    argv = [
        f"--result_path={results}",
        f"--dataset_path={images}",
        f"--anno_path={paths['anno']}",
        f"--eval_output_dir={tmp_path / 'out'}",
        *ARGS,
    ]
    return results, images, argv


def run_postprocess(argv):
    import postprocess

    return postprocess.main(argv)


@pytest.mark.slow
def test_postprocess_names_a_missing_bin_file(copied_run):
    from nasfpn.deploy.result_files import ResultFileError

    results, _, argv = copied_run
    os.remove(results / f"{RENAMED[:-4]}_1.bin")
    with pytest.raises(ResultFileError, match=f"missing result file .*{RENAMED[:-4]}_1.bin"):
        run_postprocess(argv)
    assert not (results.parent / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_postprocess_checks_sizes_against_the_config(copied_run):
    """At 384x384 A = (48^2+24^2+12^2+6^2+3^2) x 9 = 27621 anchors; the files hold 3069 x 4 values."""
    from nasfpn.deploy.result_files import ResultFileError

    _, _, argv = copied_run
    with pytest.raises(ResultFileError, match=r"_0.bin: 12276 float32 values, expected 27621 x 4 = 110484"):
        run_postprocess([*argv, "--img_shape=[384,384]"])


@pytest.mark.slow
def test_postprocess_names_an_image_missing_from_the_annotation(copied_run):
    _, images, argv = copied_run
    shutil.copy(images / RENAMED, images / "not_annotated.jpg")
    with pytest.raises(ValueError, match="file name 'not_annotated.jpg' is not in the annotation file"):
        run_postprocess(argv)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["result_path", "dataset_path", "anno_path"])
def test_postprocess_requires_its_three_paths(copied_run, key):
    from nasfpn.config.flat import ConfigError

    _, _, argv = copied_run
    argv = [a for a in argv if not a.startswith(f"--{key}=")] + [f"--{key}="]
    with pytest.raises(ConfigError, match=f"--{key}: required by postprocess.py"):
        run_postprocess(argv)


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


@pytest.mark.parametrize(
    "missing, message",
    [(0, "MINDIR_PATH is not a file"), (1, "DATA_PATH is not a folder"), (2, "ANNO_PATH is not a file")],
)
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
    run = run_script(
        ["scripts/run_infer_310.sh", *fake_inputs, "1"],
        OUT_DIR=str(out),
        MINDSPORE_PATH=str(tmp_path / "no_mindspore"),
    )
    assert run.returncode != 0
    assert "no MindSpore C++ inference API" in run.stderr
    this_run = out / os.readlink(out / "build.log")  # build.log links to this run's dated log
    assert f"building the Ascend 310 app failed; see {this_run}" in run.stderr
    assert "include/api/model.h" in this_run.read_text()
    assert not (out / "result_Files").exists()


def test_run_infer_310_names_a_missing_build_tool(fake_inputs, tmp_path):
    """PATH = every command of /usr/bin except cmake: the build stops and says which tool is missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in os.listdir("/usr/bin"):
        if name != "cmake":
            os.symlink(os.path.join("/usr/bin", name), bin_dir / name)
    out = tmp_path / "out"
    run = run_script(
        ["scripts/run_infer_310.sh", *fake_inputs], OUT_DIR=str(out), PATH=str(bin_dir), PYTHON=sys.executable
    )
    assert run.returncode != 0
    this_run = out / os.readlink(out / "build.log")
    assert "build.sh: 'cmake' not found on PATH" in this_run.read_text()
    assert f"building the Ascend 310 app failed; see {this_run}" in run.stderr
