"""Own data as a labelling tool exports it: category ids 7, 12, 30, file names that are not numbers,
every 8th image without objects, images in a folder of their own. Negatives are kept (converter,
evaluation, training) and the image folder is an option of every converter path."""

import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest

import create_data
from nasfpn.data.converters import NO_OBJECT_ROW
from nasfpn.core.errors import UserFileNotFoundError
from tests.conftest import TINY, make_config

CATEGORIES = [{"id": 7, "name": "scratch"}, {"id": 12, "name": "dent"}, {"id": 30, "name": "stain"}]
NUM_IMAGES = 10
SIDE = 64


def _is_empty(index):
    return index % 8 == 0  # images 0 and 8: no objects, as in a defect set's good parts


def _write_export(folder):
    """The images in folder/pictures and a COCO file folder/labels.json; returns (json path,
    images folder, ids of the images without objects)."""
    rng = np.random.default_rng(5)
    pictures = os.path.join(folder, "pictures")
    os.makedirs(pictures)
    images, annotations, empty_ids = [], [], []
    for index in range(NUM_IMAGES):
        image_id = 1000 + 3 * index
        name = f"part_{chr(ord('a') + index)}x.jpg"
        pixels = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
        assert cv2.imwrite(os.path.join(pictures, name), pixels)
        images.append({"id": image_id, "file_name": name, "width": SIDE, "height": SIDE})
        if _is_empty(index):
            empty_ids.append(image_id)
            continue
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": CATEGORIES[index % 3]["id"],
                "bbox": [4.0 + index, 6.0, 20.0, 24.0],
            }
        )  # no iscrowd/area: a tool's export
    path = os.path.join(folder, "labels.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return path, pictures, empty_ids


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return _write_export(str(tmp_path_factory.mktemp("export")))


def _convert(*args):
    """create_data.py in this process; (first shard, printed text)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        first = create_data.main(["--num_classes=4", "--num_shards=1", *args])
    return first, out.getvalue()


def _rows(mindrecord):
    """img_id -> annotation rows, read back with MindSpore's FileReader."""
    from mindspore.mindrecord import FileReader

    reader = FileReader(mindrecord, columns=["img_id", "annotation"])
    try:
        return {int(r["img_id"][0]): r["annotation"].tolist() for r in reader.get_next()}
    finally:
        reader.close()


@pytest.mark.parametrize("is_training", ["true", "false"])
def test_converter_keeps_images_without_objects_and_says_how_many(export, tmp_path, is_training):
    anno, pictures, empty_ids = export
    split_dir = "train_image_dir" if is_training == "true" else "val_image_dir"
    first, printed = _convert(
        f"--anno_path={anno}",
        f"--{split_dir}={pictures}",
        f"--is_training={is_training}",
        f"--mindrecord_dir={tmp_path}",
    )
    rows = _rows(first)
    assert len(rows) == NUM_IMAGES
    assert sorted(i for i, r in rows.items() if r == NO_OBJECT_ROW.tolist()) == sorted(empty_ids)
    assert all(r[0][4] >= 1 for i, r in rows.items() if i not in empty_ids)
    assert (
        "images written: 10\n  without objects (kept as negatives): 2 "
        "(--empty_images=auto, own classes)" in printed
    )
    assert f"images from {pictures} (--{split_dir})" in printed


def test_empty_images_skip_and_coco_names_keep_the_release_rule(export, tmp_path):
    anno, pictures, empty_ids = export
    first, printed = _convert(
        f"--anno_path={anno}",
        f"--image_dir={pictures}",
        "--empty_images=skip",
        f"--mindrecord_dir={tmp_path / 'skip'}",
    )
    assert sorted(_rows(first)) == sorted(i for i in range(1000, 1030, 3) if i not in empty_ids)
    assert "without objects (--empty_images=skip): 2" in printed
    with open(anno) as f:
        coco_named = json.load(f)
    for category, name in zip(coco_named["categories"], ("person", "car", "dog")):
        category["name"] = name
    renamed = tmp_path / "coco_names.json"
    renamed.write_text(json.dumps(coco_named))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        first = create_data.main(
            [
                f"--anno_path={renamed}",
                f"--image_dir={pictures}",
                "--num_shards=1",
                f"--mindrecord_dir={tmp_path / 'coco'}",
            ]
        )
    assert len(_rows(first)) == NUM_IMAGES - len(empty_ids)
    assert "without objects (--empty_images=auto, COCO class names: the release's rule): 2" in out.getvalue()


def test_text_list_uses_the_split_image_folder_and_keeps_empty_lines(export, tmp_path):
    _, pictures, _ = export
    names = sorted(os.listdir(pictures))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{names[0]} 4,6,24,30,2\n{names[1]}\n")
    first, printed = _convert(
        "--create_dataset=other",
        f"--anno_path={listing}",
        "--image_dir=/nonexistent/used/only/without/val_image_dir",
        f"--val_image_dir={pictures}",
        "--is_training=false",
        f"--mindrecord_dir={tmp_path / 'mr'}",
    )
    assert _rows(first) == {0: [[6, 4, 30, 24, 2]], 1: NO_OBJECT_ROW.tolist()}
    assert "without objects (kept as negatives): 1" in printed


@pytest.mark.parametrize("create_dataset", ["coco", "other"])
def test_a_missing_image_folder_names_the_option_that_chose_it(export, tmp_path, create_dataset):
    anno, _, _ = export
    args = [
        f"--create_dataset={create_dataset}",
        f"--anno_path={anno}",
        f"--coco_root={tmp_path}",
        f"--mindrecord_dir={tmp_path / 'mr'}",
    ]
    with pytest.raises(UserFileNotFoundError) as default:
        create_data.main(args)
    assert str(default.value) == (
        f"image folder not found: {tmp_path / 'train2017'} (coco_root/"
        "<train_data_type>, as no --train_image_dir or --image_dir is given)"
    )
    with pytest.raises(
        UserFileNotFoundError, match=r"^image folder not found: /no/such \(--train_image_dir\)$"
    ):
        create_data.main(args + ["--train_image_dir=/no/such", "--image_dir=/elsewhere"])


def _gt_and_detections():
    """Hand-built ground truth: image 1 holds one 'dent', image 2 none. Network-style outputs (two
    anchors, normalised y1x1y2x2 boxes, sigmoid scores over 4 columns): on image 1 the dent's exact
    box at 0.8; on image 2 a dent at 0.9, a false positive ranked above the true one."""
    gt = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 12,
                "bbox": [20.0, 10.0, 40.0, 50.0],
                "area": 2000.0,
                "iscrowd": 0,
            }
        ],
        "categories": CATEGORIES,
    }
    boxes = {
        1: np.array([[0.1, 0.2, 0.6, 0.6], [0, 0, 0.1, 0.1]], np.float32),
        2: np.array([[0.3, 0.3, 0.7, 0.8], [0, 0, 0.1, 0.1]], np.float32),
    }
    scores = {
        1: np.array([[0, 0, 0.8, 0], [0, 0, 0, 0]], np.float32),
        2: np.array([[0, 0, 0.9, 0], [0, 0, 0, 0]], np.float32),
    }
    # The same detections as COCO results, written out here: bbox [x, y, w, h] in pixels.
    results = [
        {"image_id": 1, "category_id": 12, "bbox": [20.0, 10.0, 40.0, 50.0], "score": 0.8},
        {"image_id": 2, "category_id": 12, "bbox": [30.0, 30.0, 50.0, 40.0], "score": 0.9},
    ]
    return gt, boxes, scores, results


def _pycocotools_ap(gt, results, image_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = json.loads(json.dumps(gt))
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes([dict(r) for r in results]), "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[0]


def test_a_false_positive_on_an_image_without_objects_lowers_ap_as_pycocotools_does(tmp_path):
    """Converter -> MindRecord image ids -> our collector and metrics, against pycocotools run here."""
    from nasfpn.evaluation.scoring import DetectionCollector, mindrecord_image_ids

    gt, boxes, scores, results = _gt_and_detections()
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for image in gt["images"]:
        assert cv2.imwrite(str(pictures / image["file_name"]), np.full((100, 100, 3), 90, np.uint8))
    anno = tmp_path / "labels.json"
    anno.write_text(json.dumps(gt))
    first, _ = _convert(
        f"--anno_path={anno}",
        f"--val_image_dir={pictures}",
        "--is_training=false",
        f"--mindrecord_dir={tmp_path / 'mr'}",
    )
    image_ids = mindrecord_image_ids(first)
    assert sorted(image_ids) == [1, 2]  # the image without objects is evaluated
    collector = DetectionCollector(str(anno), num_classes=4)
    for image_id in image_ids:
        collector.add(image_id, boxes[image_id], scores[image_id], (100, 100))
    ours = collector.evaluate()["AP"]
    expected = _pycocotools_ap(gt, results, [1, 2])
    # Same library, same inputs: equal to the last bit. The FP ranked first halves the precision
    # at full recall, which the AP without image 2 (1.0) would not show.
    assert ours == expected
    assert expected == pytest.approx(0.5, abs=0.01)  # 101-point interpolation: 0.5 exactly here
    assert _pycocotools_ap(gt, results, [1]) == pytest.approx(1.0)


@pytest.mark.slow
def test_a_training_step_on_a_pure_background_batch_is_finite_and_raises_background(export, tmp_path):
    """The empty images of the export, through the real training pipeline: every anchor background,
    num_match 0; the loss is the focal loss of all-background targets (divided by max(0, 1)) and
    one step raises the background column and lowers the object columns."""
    import mindspore as ms
    from nasfpn.data.pipeline import create_train_dataset
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.training.train_step import TrainStep, build_optimizer

    anno, pictures, empty_ids = export
    with open(anno) as f:
        coco = json.load(f)
    coco["images"] = [i for i in coco["images"] if i["id"] in empty_ids]
    coco["annotations"] = []
    only_empty = tmp_path / "negatives.json"
    only_empty.write_text(json.dumps(coco))
    first, _ = _convert(
        f"--anno_path={only_empty}", f"--train_image_dir={pictures}", f"--mindrecord_dir={tmp_path / 'mr'}"
    )
    cfg = make_config(*TINY, "--num_classes=4", "--num_parallel_workers=1")
    batch = next(
        iter(
            create_train_dataset(
                first,
                cfg.data,
                cfg.augmentation,
                cfg.anchors,
                cfg.model.img_shape,
                batch_size=2,
                shuffle=False,
            )
        )
    )
    images, gt_loc, gt_label, num_match = batch
    assert not gt_label.asnumpy().any() and not num_match.asnumpy().any()
    assert not gt_loc.asnumpy().any()

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(2)
    detector = build_detector(cfg.model, cfg.anchors)
    net = RetinaNetWithLoss(detector, 4, cfg.gamma, cfg.alpha)
    step = TrainStep(net, build_optimizer(net, np.full(2, 0.01, np.float32)), grad_clip_norm=10.0)
    step.set_train()
    logits_before = detector(images)[1].asnumpy().astype(np.float64)
    loss = float(step(*batch)[0].asnumpy())
    logits_after = detector(images)[1].asnumpy().astype(np.float64)

    # Focal loss (alpha 0.75 on the positive term, gamma 2) with target 1 on column 0 only.
    p = 1 / (1 + np.exp(-logits_before))
    target = np.zeros_like(p)
    target[..., 0] = 1
    p_t = np.where(target == 1, p, 1 - p)
    alpha_t = np.where(target == 1, cfg.alpha, 1 - cfg.alpha)
    expected = float((alpha_t * (1 - p_t) ** cfg.gamma * -np.log(p_t)).sum())
    assert np.isfinite(loss)
    # ~25k float32 terms summed in another order by the graph: relative error far below 1e-4.
    assert loss == pytest.approx(expected, rel=1e-4)
    assert logits_after[..., 0].mean() > logits_before[..., 0].mean()
    assert logits_after[..., 1:].mean() < logits_before[..., 1:].mean()


@pytest.mark.slow
def test_a_pre_trained_class_head_of_other_classes_suggests_filter_weight(tmp_path):
    """Fine-tuning an 81-class checkpoint on this 3-class set: the refusal says what to add."""
    import mindspore as ms
    from nasfpn.model_files.checkpoint import CheckpointError
    from nasfpn.inference.build import build_inference_network
    from nasfpn.training.trainer import Trainer

    path = str(tmp_path / "coco.ckpt")
    ms.save_checkpoint(build_inference_network(make_config(*TINY, "--num_classes=81")), path)
    options = (*TINY, "--num_classes=4", f"--pre_trained={path}", f"--save_checkpoint_path={tmp_path}")
    with pytest.raises(CheckpointError) as refused:
        Trainer(make_config(*options), batches_per_epoch=1).restore()
    message = str(refused.value)
    assert (
        "with the wrong shape: network.head.multi_cls_layers.0.feats.2.weight [729, 64, 3, 3] "
        "(expected [36, 64, 3, 3])" in message
    )  # 9 anchors x 81 classes in the file, 9 x 4 here
    assert message.endswith(
        "Its class head predicts 81 classes, this network 4 (--num_classes): to "
        "fine-tune on other classes, add --filter_weight=True (everything else is "
        "loaded; the classes whose names this run shares keep their rows of the "
        "class head, the others start from the initialisation)."
    )


def test_own_classes_listed_in_coco_classes_keep_their_negatives(export, tmp_path):
    """--empty_images=auto skips only for the 80 COCO names; own names matched by name onto a
    configured coco_classes list (the demo's way) are still own classes."""
    anno, pictures, empty_ids = export
    first, printed = _convert(
        f"--anno_path={anno}",
        f"--image_dir={pictures}",
        "--coco_classes=[background,stain,scratch,dent]",
        f"--mindrecord_dir={tmp_path / 'listed'}",
    )
    rows = _rows(first)
    assert len(rows) == NUM_IMAGES
    assert sorted(i for i, r in rows.items() if r == NO_OBJECT_ROW.tolist()) == sorted(empty_ids)
    assert "classes: by COCO name onto coco_classes" in printed
    assert "without objects (kept as negatives): 2 (--empty_images=auto, own classes)" in printed
