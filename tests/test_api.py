"""The Python API (nasfpn/api.py) against the commands: `Detector.predict` gives `nasfpn infer`'s
detections (a checkpoint, an ONNX export, the hub download), `evaluate` gives `nasfpn eval`'s
metrics, `export` writes a file the CLI runs; errors are the commands' one-line UserErrors."""

import functools
import hashlib
import json
import os
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import run_command
from tests.test_infer import spread_class_scores

SIZE = 160  # not the network's 128: boxes come back in the image's own pixels
THRESHOLD = 0.2
# detections.json rounds boxes to 0.01 px and scores to 1e-5 (nasfpn/inference/detections.py:
# coco_detection); the API returns float32, whose rounding adds at most 160 * 2**-24 ~ 1e-5 px
# (coordinates < 160) and 2**-24 to a score < 1. A box's width is the rounded difference of two
# float64 coordinates, so it has the same bound plus one more float32 rounding.
BOX_TOLERANCE = 0.005 + 2 * SIZE * 2.0**-24
SCORE_TOLERANCE = 0.5e-5 + 2.0**-24


def nasfpn_command(*args, cwd):
    """`nasfpn <args>` as a user runs it (python -m nasfpn: the console script's main)."""
    return run_command([sys.executable, "-m", "nasfpn", *args], cwd=cwd)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Two embedded-set images, a TINY checkpoint that carries its options and class list, and its
    ONNX export written by nasfpn.export (so a model file is all the API and the CLI are given)."""
    import mindspore as ms
    import nasfpn
    from nasfpn.data.coco_format import class_names_and_ids
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.inference.build import build_inference_network
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.model_files.description import ModelDescription, checkpoint_entries

    root = str(tmp_path_factory.mktemp("coco") / "shapes")
    generate_embedded_dataset(root, num_train=1, num_val=2, size=SIZE, seed=11)
    anno = os.path.join(root, "annotations", "instances_val2017.json")
    ms.set_seed(3)
    cfg = make_config(*TINY, "--num_classes=4")
    names, to_category, _ = class_names_and_ids(anno, cfg.coco_classes, cfg.num_classes)
    described = ModelDescription.of_sections(
        cfg.model, cfg.anchors, names, [to_category.get(i) for i in range(1, 4)]
    )
    net = build_inference_network(cfg)
    spread_class_scores(net)
    folder = tmp_path_factory.mktemp("model")
    ckpt = save_checkpoint_atomic(net, str(folder / "tiny.ckpt"), append_dict=checkpoint_entries(described))
    onnx = nasfpn.export(ckpt, file_name=str(folder / "tiny"), file_format="ONNX")
    return {"root": root, "images": os.path.join(root, "val2017"), "anno": anno, "ckpt": ckpt, "onnx": onnx}


@pytest.fixture(scope="module")
def detector(model):
    from nasfpn import Detector

    return Detector.load(model["ckpt"], score_threshold=THRESHOLD)


def cli_detections(model, option, work, images=None, status=0):
    """detections.json of `nasfpn infer` on the model's images (no option but the model's file)."""
    run = nasfpn_command(
        "infer",
        f"--image={images or model['images']}",
        option,
        f"--output_dir={work / 'out'}",
        f"--score_threshold={THRESHOLD}",
        cwd=work,
    )
    assert run.returncode == status, run.stderr[-3000:]
    with open(work / "out" / "detections.json") as f:
        return json.load(f)


def assert_same_detections(results, entries):
    """The API's per-image results are the CLI's JSON entries: same images, count, order, classes
    and category ids; boxes (x1 y1 x2 y2 -> x y w h) and scores within the JSON's rounding."""
    assert [os.path.basename(r.source) for r in results] == sorted({e["file_name"] for e in entries})
    assert sum(len(r) for r in results) == len(entries) > 0
    for result in results:
        rows = [e for e in entries if e["file_name"] == os.path.basename(result.source)]
        assert result.boxes.dtype == np.float32 and result.boxes.shape == (len(rows), 4)
        assert result.scores.dtype == np.float32 and result.scores.shape == (len(rows),)
        assert result.labels == [e["category_name"] for e in rows]
        assert result.category_ids.tolist() == [e["category_id"] for e in rows]
        assert result.class_ids.tolist() == result.category_ids.tolist()  # the embedded set: ids 1, 2, 3
        xywh = np.concatenate([result.boxes[:, :2], result.boxes[:, 2:] - result.boxes[:, :2]], axis=1)
        np.testing.assert_allclose(xywh, [e["bbox"] for e in rows], rtol=0, atol=BOX_TOLERANCE)
        np.testing.assert_allclose(result.scores, [e["score"] for e in rows], rtol=0, atol=SCORE_TOLERANCE)
        assert result.boxes[:, 2].max() > 128  # the image's pixels, not the network's 128 x 128


@pytest.mark.slow
def test_detector_on_a_checkpoint_gives_the_cli_detections(model, detector, tmp_path):
    """Beside the images, an undecodable file: `nasfpn infer` skips it with infer.py's exit
    status 3 (nasfpn/core/exits.py) and its JSON covers the others."""
    import cv2
    import shutil

    images = tmp_path / "images"
    shutil.copytree(model["images"], images)
    (images / "zz_broken.jpg").write_bytes(b"not a jpeg")

    assert_same_detections(
        detector.predict(model["images"]),
        cli_detections(model, f"--checkpoint_path={model['ckpt']}", tmp_path, images, status=3),
    )
    assert detector.class_names == ["background", "circle", "square", "triangle"]  # carried by the file
    # Files, arrays (RGB) and a list of both give the same results, in the order given.
    files = sorted(os.path.join(model["images"], n) for n in os.listdir(model["images"]))
    arrays = [cv2.imread(path)[..., ::-1].copy() for path in files]
    from_files = detector.predict(files)
    for got, expected in zip(detector.predict([arrays[0], files[1]]), from_files):
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        np.testing.assert_array_equal(got.scores, expected.scores)
        assert got.labels == expected.labels
    assert detector.predict(arrays[1])[0].source == "array[0]"
    higher = detector.predict(files[0], score_threshold=0.7)[0]
    assert 0 < len(higher) < len(from_files[0]) and higher.scores.min() >= 0.7


@pytest.mark.slow
def test_detector_on_an_onnx_export_gives_the_cli_detections(model, tmp_path):
    from nasfpn import Detector

    detector = Detector.load(model["onnx"], score_threshold=THRESHOLD)
    assert detector.path == model["onnx"]
    assert_same_detections(
        detector.predict(model["images"]), cli_detections(model, f"--model_path={model['onnx']}", tmp_path)
    )


@pytest.mark.slow
def test_detector_loads_the_hub_checkpoint_verified_by_its_digest(model, detector, tmp_path):
    """Detector.load("hub") with another URL (a local server) and its sha256: downloaded once into
    the cache, then the checkpoint's detections. As with --hub, the file's description is not read
    (the published checkpoint has none): the network options and the classes are given."""
    import yaml
    from nasfpn import Detector

    options = {key[2:]: yaml.safe_load(value) for key, value in (a.split("=", 1) for a in TINY)}

    handler = functools.partial(SimpleHTTPRequestHandler, directory=os.path.dirname(model["ckpt"]))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with open(model["ckpt"], "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        hub = Detector.load(
            "hub",
            hub_url=f"http://127.0.0.1:{httpd.server_port}/tiny.ckpt",
            checkpoint_sha256=sha,
            hub_cache_dir=str(tmp_path / "cache"),
            score_threshold=THRESHOLD,
            num_classes=4,
            anno_path=model["anno"],
            **options,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert os.listdir(tmp_path / "cache") == ["tiny.ckpt"]
    for got, expected in zip(hub.predict(model["images"]), detector.predict(model["images"])):
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        assert got.labels == expected.labels


@pytest.mark.slow
def test_evaluate_gives_the_metrics_of_nasfpn_eval(model, tmp_path):
    import create_data
    import nasfpn

    create_data.main(
        [
            "--create_dataset=coco",
            f"--coco_root={model['root']}",
            "--is_training=false",
            "--num_classes=4",
            f"--mindrecord_dir={tmp_path / 'mr'}",
            "--num_shards=1",
        ]
    )
    common = [f"--mindrecord_dir={tmp_path / 'mr'}", f"--coco_root={model['root']}"]
    run = nasfpn_command(
        "eval",
        f"--checkpoint_path={model['ckpt']}",
        *common,
        f"--eval_output_dir={tmp_path / 'cli'}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stats = nasfpn.evaluate(
        model["ckpt"],
        mindrecord_dir=str(tmp_path / "mr"),
        coco_root=model["root"],
        eval_output_dir=str(tmp_path / "api"),
    )
    for name in ("predictions.json", "metrics.json"):
        with open(tmp_path / "cli" / name) as a, open(tmp_path / "api" / name) as b:
            cli, api = json.load(a), json.load(b)
        if name == "metrics.json":  # each run states when it ran
            assert cli.pop("evaluated_at") <= api.pop("evaluated_at")
        assert cli == api, name  # same graph, weights and inputs: identical
    assert run.stdout.splitlines()[-1] == f"mAP: {stats['AP']}"


def test_a_missing_model_file_is_the_clis_one_line_error(tmp_path):
    import cv2
    from nasfpn import Detector
    from nasfpn.core.errors import UserError

    cv2.imwrite(str(tmp_path / "one.jpg"), np.zeros((16, 16, 3), np.uint8))
    missing = str(tmp_path / "missing.onnx")
    with pytest.raises(UserError) as info:
        Detector.load(missing)
    message = str(info.value)
    assert "missing.onnx" in message and "\n" not in message
    run = nasfpn_command("infer", f"--image={tmp_path / 'one.jpg'}", f"--model_path={missing}", cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.splitlines()[-1] == f"error: {message}"


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"score_threshold": "high"}, "--score_threshold: expected a number, got 'high'"),
        ({"scor_threshold": 0.5}, "unknown config key 'scor_threshold'; did you mean score_threshold"),
        ({"runtime": "openvino"}, "--runtime=openvino applies to an exported model"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(tmp_path, options, fragment):
    from nasfpn import Detector
    from nasfpn.config.flat import ConfigError

    with pytest.raises(ConfigError) as info:
        Detector.load(str(tmp_path / "m.ckpt"), **options)
    assert fragment in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "images, fragment",
    [
        (
            np.zeros((8, 8), np.uint8),
            "array[0]: expected an RGB image array of shape (H, W, 3) and dtype uint8",
        ),
        ([np.zeros((8, 8, 3), np.float32)], "got shape (8, 8, 3) and dtype float32"),
        ([], "images: the list is empty"),
        ([3], "images[0]: expected an image path or an RGB array, got int"),
        ("/no/such/*.jpg", "--image=/no/such/*.jpg: no image files found"),
    ],
)
def test_bad_images_are_user_errors(detector, images, fragment):
    from nasfpn.core.errors import UserError

    with pytest.raises(UserError) as info:
        detector.predict(images)
    assert fragment in str(info.value)


@pytest.mark.slow
def test_an_undecodable_file_is_named(detector, tmp_path):
    from nasfpn.data.transforms import ImageDecodeError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageDecodeError, match="broken.jpg: not a decodable image"):
        detector.predict(str(bad))
