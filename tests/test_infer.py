"""infer.py as a user runs it: a folder or a glob of images, a checkpoint or an exported ONNX model;
annotated images and COCO-style JSON in original pixels; clear errors before any work."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import run_script

ARGS = (*TINY, "--num_classes=4", "--score_threshold=0.2")  # embedded set: 3 shapes + background
SIZE = 160  # not the network's 128: boxes must be rescaled to the original image


def run_infer(args, cwd):
    return run_script("infer.py", ARGS, args, cwd)


def spread_class_scores(net, std=1.0, seed=5):
    """A freshly initialised head scores every anchor ~0.5 (near-ties that 1e-7 runtime differences
    reorder); larger classification-subnet weights spread the scores like a trained network's."""
    import mindspore as ms

    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        if "multi_cls_layers" in p.name and p.name.endswith(".weight"):
            p.set_data(ms.Tensor(rng.normal(0, std, p.shape).astype(np.float32)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two embedded-set images with their annotation file, and a TINY checkpoint + ONNX export."""
    import mindspore as ms
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network

    root = str(tmp_path_factory.mktemp("coco") / "shapes")
    generate_embedded_dataset(root, num_train=1, num_val=2, size=SIZE, seed=11)
    ms.set_seed(3)
    cfg = make_config(*ARGS)
    net = build_inference_network(cfg)
    spread_class_scores(net)
    folder = tmp_path_factory.mktemp("model")
    ckpt = save_checkpoint_atomic(net, str(folder / "tiny.ckpt"))
    onnx = export_network(net, str(folder / "tiny"), "ONNX", 1, tuple(cfg.img_shape))
    return {
        "images": os.path.join(root, "val2017"),
        "ckpt": ckpt,
        "onnx": onnx,
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
    }


@pytest.fixture(scope="module")
def ckpt_run(data, tmp_path_factory):
    work = tmp_path_factory.mktemp("infer_ckpt")
    run = run_infer(
        [
            f"--image={data['images']}",
            f"--checkpoint_path={data['ckpt']}",
            f"--anno_path={data['anno']}",
            f"--output_dir={work / 'out'}",
        ],
        cwd=str(work),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return work


def reference_detections(data):
    """The same images through the network in this process, post-processed, kept >= 0.2."""
    from nasfpn.data.transforms import decode_image, preprocess_image
    from nasfpn.inference.build import build_inference_network
    from nasfpn.inference.detections import detections_of_image

    cfg = make_config(*ARGS)
    net = build_inference_network(cfg, data["ckpt"])
    import mindspore as ms

    out = {}
    for name in sorted(os.listdir(data["images"])):
        image = decode_image(os.path.join(data["images"], name))
        boxes, scores = net(ms.Tensor(preprocess_image(image, cfg.img_shape)[None]))
        b, s, c = detections_of_image(boxes.asnumpy()[0], scores.asnumpy()[0], image.shape[:2])
        keep = s >= 0.2
        out[name] = (b[keep], s[keep], c[keep])
    return out


@pytest.mark.slow
def test_writes_annotated_images_and_json_in_original_pixels(ckpt_run, data):
    import cv2

    out = ckpt_run / "out"
    names = sorted(os.listdir(data["images"]))
    assert sorted(os.listdir(out)) == sorted(
        [os.path.splitext(n)[0] + "_det.jpg" for n in names] + ["detections.json"]
    )
    assert [n for n in os.listdir(ckpt_run) if n != "out"] == []  # nothing in the working directory
    with open(data["anno"]) as f:
        anno = json.load(f)
    ids = {im["file_name"]: im["id"] for im in anno["images"]}
    cat_names = {c["id"]: c["name"] for c in anno["categories"]}
    with open(out / "detections.json") as f:
        detections = json.load(f)
    reference = reference_detections(data)
    assert len(detections) == sum(len(r[1]) for r in reference.values()) > 0
    for name in names:
        got = [d for d in detections if d["file_name"] == name]
        boxes, scores, classes = reference[name]
        assert all(d["image_id"] == ids[name] for d in got)
        assert [cat_names[d["category_id"]] for d in got] == [d["category_name"] for d in got]
        np.testing.assert_allclose([d["score"] for d in got], scores, atol=1e-4)
        xywh = np.array([d["bbox"] for d in got])
        np.testing.assert_allclose(xywh[:, :2], boxes[:, :2], atol=0.02)
        np.testing.assert_allclose(xywh[:, :2] + xywh[:, 2:], boxes[:, 2:], atol=0.03)
        assert xywh[:, 0].min() >= 0 and (xywh[:, 0] + xywh[:, 2]).max() <= SIZE + 0.01
        assert (xywh[:, 0] + xywh[:, 2]).max() > 128  # original pixels, not the network's 128x128
        drawn = cv2.imread(str(out / (os.path.splitext(name)[0] + "_det.jpg")))
        original = cv2.imread(os.path.join(data["images"], name))
        assert drawn.shape == original.shape
        assert np.abs(drawn.astype(int) - original).max() > 100  # boxes and labels were drawn


@pytest.mark.slow
def test_onnx_model_and_a_glob_give_the_checkpoint_detections(ckpt_run, data, tmp_path):
    """Greedy NMS of a box depends only on higher-scoring boxes, so above a high threshold the
    ~1e-7 ONNX/MindSpore differences cannot reorder near-tied low scores into the result."""
    out = tmp_path / "out"
    run = run_infer(
        [
            f"--image={data['images']}/*.jpg",
            f"--model_path={data['onnx']}",
            f"--anno_path={data['anno']}",
            f"--output_dir={out}",
            "--score_threshold=0.7",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "detections.json") as f:
        from_onnx = json.load(f)
    with open(ckpt_run / "out" / "detections.json") as f:
        from_ckpt = [d for d in json.load(f) if d["score"] >= 0.7]
    assert len(from_onnx) == len(from_ckpt) > 0
    for a, b in zip(from_onnx, from_ckpt):
        assert (a["file_name"], a["category_id"]) == (b["file_name"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.05)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image=/no/such/*.jpg", "--checkpoint_path=x.ckpt"], "--image=/no/such/\\*.jpg: no image files"),
        (["--image={images}"], "give exactly one of --checkpoint_path"),
        (["--image={images}", "--checkpoint_path={ckpt}", "--hub"], "give exactly one of"),
        (
            ["--image={images}", "--checkpoint_path={ckpt}"],
            "coco_classes has 81 names but --num_classes is 4",
        ),
    ],
)
def test_bad_arguments_fail_early_and_clearly(data, tmp_path, args, message):
    args = [a.format(**data) for a in args]
    run = run_infer(args, cwd=str(tmp_path))
    assert run.returncode == 2
    assert message.replace("\\", "") in run.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_local_copy_of_the_published_file_is_checked_against_the_card(data, tmp_path):
    published = tmp_path / "nasfpn_ascend_v160_coco2017_research_cv_mAP41.51.ckpt"
    shutil.copy(data["ckpt"], published)
    run = run_infer(
        [f"--image={data['images']}", f"--checkpoint_path={published}", f"--anno_path={data['anno']}"],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert (
        "sha256 mismatch: expected baf3ce544edce7a1eeaa4dfa34e447a64a572ae7c0be3c2c5f42938a78fb2e3c"
        in run.stderr
    )


@pytest.mark.slow
def test_hub_downloads_verifies_and_runs(data, tmp_path):
    """--hub with another URL (a local server) and its digest: cached download, then detection."""
    import functools
    import hashlib
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=os.path.dirname(data["ckpt"]))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        sha = hashlib.sha256(open(data["ckpt"], "rb").read()).hexdigest()
        url = f"http://127.0.0.1:{httpd.server_port}/tiny.ckpt"
        run = run_infer(
            [
                f"--image={data['images']}",
                "--hub",
                f"--hub_url={url}",
                f"--checkpoint_sha256={sha}",
                f"--hub_cache_dir={tmp_path / 'cache'}",
                f"--anno_path={data['anno']}",
                f"--output_dir={tmp_path / 'out'}",
            ],
            cwd=str(tmp_path),
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run.returncode == 0, run.stderr[-3000:]
    assert os.listdir(tmp_path / "cache") == ["tiny.ckpt"]
    assert "detections.json" in os.listdir(tmp_path / "out")


def test_a_class_the_annotation_file_lacks_is_drawn_but_left_out_of_the_json(tmp_path):
    """With a by-name class mapping (a COCO subset), class index 2 has no category in the file; its
    index must not be written as a category id (it could be another category's id there)."""
    import cv2
    import mindspore as ms
    import mindspore.nn as nn
    from nasfpn.inference.runtimes import open_runtime
    from nasfpn.inference.detect_images import detect_images

    class TwoDetections(nn.Cell):
        """Anchor 0: class 2 at 0.9; anchor 1: class 3 at 0.8, on separate boxes (no NMS between)."""

        def construct(self, images):
            boxes = ms.Tensor(np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]], np.float32))
            scores = ms.Tensor(np.array([[[0, 0, 0.9, 0], [0, 0, 0, 0.8]]], np.float32))
            return boxes, scores + images.mean() * 0

    image = tmp_path / "7.png"
    cv2.imwrite(str(image), np.full((50, 60, 3), 128, np.uint8))
    cfg = make_config("--img_shape=[128,128]", "--num_classes=4")
    names = ["background", "person", "bicycle", "car"]
    run = detect_images(
        open_runtime(TwoDetections()),
        [str(image)],
        cfg.model.img_shape,
        cfg.postprocess,
        names,
        str(tmp_path / "out"),
        score_threshold=0.5,
        to_category={1: 1, 3: 3},
        progress=False,
    )
    with open(tmp_path / "out" / "detections.json") as f:
        written = json.load(f)
    assert [(d["category_id"], d["category_name"]) for d in written] == [(3, "car")]
    assert written == run.results and (tmp_path / "out" / "7_det.jpg").is_file()


@pytest.mark.slow
def test_draw_threshold_thins_the_pictures_but_not_the_json(ckpt_run, data, tmp_path):
    """--draw_score_threshold=T: the images are those of --score_threshold=T (only high scores
    drawn), while detections.json is that of the run without it (it keeps --score_threshold)."""
    import cv2

    high = 0.7
    common = [f"--image={data['images']}", f"--checkpoint_path={data['ckpt']}", f"--anno_path={data['anno']}"]
    thin = run_infer(
        [*common, f"--output_dir={tmp_path / 'thin'}", f"--draw_score_threshold={high}"], cwd=str(tmp_path)
    )
    assert thin.returncode == 0, thin.stderr[-3000:]
    strict = run_infer(
        [*common, f"--output_dir={tmp_path / 'strict'}", f"--score_threshold={high}"], cwd=str(tmp_path)
    )
    assert strict.returncode == 0, strict.stderr[-3000:]
    with open(tmp_path / "thin" / "detections.json") as f:
        detections = json.load(f)
    with open(ckpt_run / "out" / "detections.json") as f:
        without = json.load(f)
    assert len(detections) == len(without) > 0
    assert min(d["score"] for d in detections) < high <= max(d["score"] for d in detections)
    for a, b in zip(detections, without):
        assert (a["file_name"], a["category_id"]) == (b["file_name"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.05)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    for name in sorted(os.listdir(data["images"])):
        picture = os.path.splitext(name)[0] + "_det.jpg"
        thin_image, strict_image, full_image = (
            cv2.imread(str(folder / picture)).astype(int)
            for folder in (tmp_path / "thin", tmp_path / "strict", ckpt_run / "out")
        )
        assert np.abs(thin_image - strict_image).mean() < 0.5  # same boxes drawn
        assert np.abs(thin_image - full_image).mean() > 5  # the low-score boxes are gone


@pytest.mark.slow
def test_draw_threshold_must_be_a_probability(data, tmp_path):
    run = run_infer(
        [f"--image={data['images']}", f"--checkpoint_path={data['ckpt']}", "--draw_score_threshold=high"],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert "--draw_score_threshold: expected a number in [0, 1] or null, got 'high'" in run.stderr


def _disjoint(a, b):
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_labels_of_overlapping_boxes_do_not_hide_each_other():
    """Five detections of one object (the usual case before a low threshold), a box at the top
    edge and one in a corner: every label lies on the picture and overlaps no other."""
    from nasfpn.core.labels import place_labels

    boxes = [(40, 40, 90, 90)] * 5 + [(0, 0, 30, 20), (100, 100, 128, 128)]
    sizes = [(45, 12)] * len(boxes)
    rects = place_labels(boxes, sizes, (128, 128))
    assert len(rects) == len(boxes)
    for i, a in enumerate(rects):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= 128 and a[3] <= 128, a
        assert (a[2] - a[0], a[3] - a[1]) == sizes[i]
        assert all(_disjoint(a, b) for b in rects[i + 1 :]), rects
    # the first label keeps the usual place, above its box's corner
    assert rects[0] == (40, 28, 85, 40)
