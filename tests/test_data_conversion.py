"""Data conversion: the embedded generator, COCO/text to MindRecord with its skip rules and bad
inputs, where the files live, and the pipelines on the converted records."""

import json
import os
import shutil

import numpy as np
import pytest

from nasfpn.data.converters import (
    ConversionError,
    Summary,
    coco_samples,
    existing_outputs,
    text_samples,
    write_mindrecord,
)
from nasfpn.data.embedded import generate_embedded_dataset
from nasfpn.data.layout import EVAL_PREFIX, TRAIN_PREFIX, annotation_path, split_prefix
from nasfpn.data.transforms import ImageDecodeError, decode_image, horizontal_flip, random_iou_crop
from tests.conftest import make_config


# Data: embedded generator, converter skip rules and bad inputs, pipelines, transforms.

SMALL = (
    "--img_shape=[128,128]",
    "--num_classes=4",
    "--anchor_size=[16,32,64,128,256]",
    "--num_parallel_workers=2",
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "coco"
    return str(generate_embedded_dataset(str(root), num_train=10, num_val=6, size=96, seed=3))


def _files(root):
    out = {}
    for base, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(base, n), "rb") as f:
                out[os.path.relpath(os.path.join(base, n), root)] = f.read()
    return out


def test_embedded_dataset_is_deterministic_and_coco_shaped(shapes, tmp_path):
    again = generate_embedded_dataset(str(tmp_path / "again"), num_train=10, num_val=6, size=96, seed=3)
    assert _files(shapes) == _files(again)
    with open(os.path.join(shapes, "annotations", "instances_val2017.json")) as f:
        coco = json.load(f)
    assert len(coco["images"]) == 6 and {c["name"] for c in coco["categories"]} == {
        "circle",
        "square",
        "triangle",
    }
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
    image = decode_image(os.path.join(shapes, "val2017", coco["images"][0]["file_name"]))
    assert image.shape == (96, 96, 3)
    with pytest.raises(FileExistsError, match="already exists"):
        generate_embedded_dataset(shapes, num_train=1, num_val=1)


def test_embedded_family_b_draws_other_shapes_in_the_same_layout(shapes, tmp_path):
    """Family B (the fine-tuning benchmark's): the same seed places the same boxes with the same
    category ids, named diamond / cross / star, each drawn in its own colour family."""
    from nasfpn.data.embedded import CATEGORIES_B

    root = generate_embedded_dataset(
        str(tmp_path / "b"), num_train=10, num_val=6, size=96, seed=3, family="B"
    )
    assert _files(root) == _files(
        generate_embedded_dataset(str(tmp_path / "b2"), num_train=10, num_val=6, size=96, seed=3, family="B")
    )
    for split in ("train2017", "val2017"):
        with open(os.path.join(shapes, "annotations", f"instances_{split}.json")) as f:
            family_a = json.load(f)
        with open(os.path.join(root, "annotations", f"instances_{split}.json")) as f:
            family_b = json.load(f)
        assert [c["name"] for c in family_b["categories"]] == ["diamond", "cross", "star"]
        assert len(family_b["annotations"]) == len(family_a["annotations"]) > 10
        for a, b in zip(family_a["annotations"], family_b["annotations"]):
            assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
            # circles' boxes come from their rounded axes: up to 1 px apart from the drawn box
            assert np.abs(np.subtract(a["bbox"], b["bbox"])).max() <= 1
    colours = np.array([c[2] for c in CATEGORIES_B], np.float64)
    by_file = {im["id"]: im["file_name"] for im in family_b["images"]}
    checked = 0
    for ann in family_b["annotations"]:
        x, y, w, h = ann["bbox"]
        image = decode_image(os.path.join(root, "val2017", by_file[ann["image_id"]]))
        others = [
            o["bbox"]
            for o in family_b["annotations"]
            if o["image_id"] == ann["image_id"] and o["id"] != ann["id"]
        ]
        cx, cy = int(x + w / 2), int(y + h / 2)
        if any(ox <= cx <= ox + ow and oy <= cy <= oy + oh for ox, oy, ow, oh in others):
            continue  # another shape may be drawn over the centre
        nearest = np.argmin(np.abs(colours - image[cy, cx].astype(np.float64)).sum(axis=1))
        assert nearest + 1 == ann["category_id"], ann
        checked += 1
    assert checked >= 5


def _read_records(path):
    import mindspore.dataset as ds

    data = ds.MindDataset(path, columns_list=["img_id", "image", "annotation"], shuffle=False)
    return {int(r["img_id"][0]): r for r in data.create_dict_iterator(output_numpy=True, num_epochs=1)}


def test_round_trip_json_to_mindrecord_keeps_boxes(shapes, tmp_path):
    anno = os.path.join(shapes, "annotations", "instances_train2017.json")
    summary = Summary()
    first, summary = write_mindrecord(
        coco_samples(anno, os.path.join(shapes, "train2017"), True, summary),
        str(tmp_path),
        "t.mindrecord",
        num_shards=3,
        summary=summary,
        progress=False,
    )
    assert summary.written == 10 and first.endswith("t.mindrecord0")
    records = _read_records(first)
    with open(anno) as f:
        coco = json.load(f)
    class_of = {1: 1, 2: 2, 3: 3}
    for image in coco["images"]:
        expected = sorted(
            [
                round(a["bbox"][1]),
                round(a["bbox"][0]),
                round(a["bbox"][1] + a["bbox"][3]),
                round(a["bbox"][0] + a["bbox"][2]),
                class_of[a["category_id"]],
            ]
            for a in coco["annotations"]
            if a["image_id"] == image["id"]
        )
        got = records[image["id"]]
        assert sorted(got["annotation"].tolist()) == expected
        with open(os.path.join(shapes, "train2017", image["file_name"]), "rb") as f:
            assert got["image"].tobytes() == f.read()


def _bad_dataset(root, shapes):
    """Seven images exercising every skip/drop rule."""
    os.makedirs(os.path.join(root, "img"))
    src = os.path.join(shapes, "val2017")
    names = sorted(os.listdir(src))
    for i in range(5):
        shutil.copy(os.path.join(src, names[i]), os.path.join(root, "img", f"{i}.jpg"))
    with open(os.path.join(root, "img", "5.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff garbage, not a jpeg")
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 96, "height": 96} for i in range(7)]
    anns = [
        {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 30, 30], "iscrowd": 0},  # good
        {
            "id": 2,
            "image_id": 1,
            "category_id": 2,
            "bbox": [80, 80, 40, 40],
            "iscrowd": 0,
        },  # outside -> clipped
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [20, 20, 0, 10], "iscrowd": 0},  # zero area
        {"id": 4, "image_id": 2, "category_id": 99, "bbox": [5, 5, 20, 20], "iscrowd": 0},  # unknown category
        {"id": 5, "image_id": 3, "category_id": 3, "bbox": [5, 5, 20, 20], "iscrowd": 1},  # crowd
        {"id": 6, "image_id": 5, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0},  # corrupt jpeg
        {"id": 7, "image_id": 6, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0},  # missing file
    ]  # 4: no annotation at all
    cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]
    path = os.path.join(root, "anno.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return path


@pytest.mark.parametrize("is_training", [True, False])
def test_skip_rules_and_bad_inputs_are_counted(shapes, tmp_path, is_training):
    anno = _bad_dataset(str(tmp_path / "bad"), shapes)
    summary = Summary()
    first, summary = write_mindrecord(
        coco_samples(anno, str(tmp_path / "bad" / "img"), is_training, summary),
        str(tmp_path / "out"),
        "b.mindrecord",
        num_shards=2,
        summary=summary,
        progress=False,
    )
    records = _read_records(first)
    # image 4 has no annotation: own classes (not COCO names), so auto keeps it as a negative
    expected_ids = {0, 1, 3, 4} if is_training else {0, 1, 4}
    assert set(records) == expected_ids
    assert records[1]["annotation"].tolist() == [[80, 80, 96, 96, 2]]
    assert records[4]["annotation"].tolist() == [[0, 0, 0, 0, 0]]  # NO_OBJECT_ROW
    assert summary.empty_written == 1
    skipped = dict(summary.skipped_images)
    assert skipped["unreadable image"] == 1 and skipped["missing image file"] == 1
    assert skipped["no usable box"] == 1  # image 2: only an unknown category, not a negative
    assert skipped.get("crowd annotation (eval)", 0) == (0 if is_training else 1)
    assert summary.dropped_boxes["zero-area box"] == 1
    assert summary.dropped_boxes["unknown category id 99"] == 1
    assert summary.clipped_boxes == 1
    text = str(summary)
    assert "unreadable image: 1" in text and "missing image file: 1" in text


def test_existing_output_is_not_overwritten(shapes, tmp_path):
    anno = os.path.join(shapes, "annotations", "instances_val2017.json")
    img_dir = os.path.join(shapes, "val2017")
    first, _ = write_mindrecord(
        coco_samples(anno, img_dir, False, Summary()), str(tmp_path), "e.mr", num_shards=2, progress=False
    )
    before = os.path.getmtime(first)
    with pytest.raises(ConversionError, match=r"e.mr0 already exists; pass --overwrite=True"):
        write_mindrecord(
            coco_samples(anno, img_dir, False, Summary()), str(tmp_path), "e.mr", num_shards=2, progress=False
        )
    assert os.path.getmtime(first) == before
    write_mindrecord(
        coco_samples(anno, img_dir, False, Summary()),
        str(tmp_path),
        "e.mr",
        num_shards=1,
        overwrite=True,
        progress=False,
    )
    assert sorted(os.listdir(tmp_path)) == ["e.mr", "e.mr.db"]


def test_empty_annotation_list_is_an_error_not_an_empty_dataset(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(ConversionError, match="no usable image"):
        write_mindrecord(
            coco_samples(str(path), str(tmp_path), True, Summary()),
            str(tmp_path / "o"),
            "x.mr",
            progress=False,
        )
    assert not os.path.exists(tmp_path / "o") or not os.listdir(tmp_path / "o")


def test_text_format(shapes, tmp_path):
    src = os.path.join(shapes, "val2017")
    name = sorted(os.listdir(src))[0]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{name} 10,12,40,50,2 5,5,5,9,1 1,1,20,20,7\n")
    summary = Summary()
    first, summary = write_mindrecord(
        text_samples(str(listing), src, 4, summary),
        str(tmp_path / "o"),
        "txt.mr",
        num_shards=1,
        summary=summary,
        progress=False,
    )
    assert _read_records(first)[0]["annotation"].tolist() == [[12, 10, 50, 40, 2]]
    assert summary.dropped_boxes["zero-area box"] == 1
    assert summary.dropped_boxes["class index outside 1..3"] == 1
    listing.write_text(f"{name} 10,12,forty,50,2\n")
    with pytest.raises(
        ConversionError, match=r"line 1: expected x1,y1,x2,y2,cls numbers, got '10,12,forty,50,2'"
    ):
        list(text_samples(str(listing), src, 4, Summary()))


def test_decode_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageDecodeError, match="bad.jpg: not a decodable image"):
        decode_image(str(bad))
    with pytest.raises(ImageDecodeError, match="absent.jpg: cannot read"):
        decode_image(str(tmp_path / "absent.jpg"))


def test_flip_and_crop_move_boxes_with_the_pixels():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:30, 20:50] = 255  # an object at y 10..30, x 20..50
    boxes = np.array([[10, 20, 30, 50]], np.float32)
    flipped, fboxes = horizontal_flip(image, boxes / [60, 80, 60, 80])
    ys, xs = np.nonzero(flipped[..., 0])
    np.testing.assert_allclose(fboxes[0] * [60, 80, 60, 80], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop, cboxes, labels = random_iou_crop(image, boxes, np.array([1]), rng)
        ys, xs = np.nonzero(crop[..., 0])
        assert len(cboxes) == 1 and labels.tolist() == [1]
        np.testing.assert_allclose(cboxes[0], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


@pytest.fixture(scope="module")
def mindrecords(shapes, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mr"))
    train, _ = write_mindrecord(
        coco_samples(
            os.path.join(shapes, "annotations", "instances_train2017.json"),
            os.path.join(shapes, "train2017"),
            True,
            Summary(),
        ),
        out,
        "retinanet.mindrecord",
        num_shards=2,
        progress=False,
    )
    val, _ = write_mindrecord(
        coco_samples(
            os.path.join(shapes, "annotations", "instances_val2017.json"),
            os.path.join(shapes, "val2017"),
            False,
            Summary(),
        ),
        out,
        "retinanet_eval.mindrecord",
        num_shards=2,
        progress=False,
    )
    return train, val


def _epoch(dataset):
    return list(dataset.create_dict_iterator(output_numpy=True, num_epochs=1))


def test_train_pipeline_shapes_targets_and_determinism(mindrecords):
    from nasfpn.ops.boxes import Anchors
    from nasfpn.data.pipeline import create_train_dataset

    cfg = make_config(*SMALL)
    batches = _epoch(
        create_train_dataset(
            mindrecords[0], cfg.data, cfg.augmentation, cfg.anchors, cfg.model.img_shape, batch_size=4, seed=7
        )
    )
    assert len(batches) == 2  # 10 images, batch 4, drop remainder
    num_anchors = len(Anchors(cfg.anchors.spec(cfg.model.img_shape)))
    b = batches[0]
    assert b["image"].shape == (4, 3, 128, 128) and b["image"].dtype == np.float32
    assert b["gt_loc"].shape == (4, num_anchors, 4) and b["gt_label"].shape == (4, num_anchors)
    assert (b["num_match"][:, 0] == (b["gt_label"] > 0).sum(1)).all() and b["num_match"].min() >= 1
    assert set(np.unique(b["gt_label"])) <= {0, 1, 2, 3}
    again = _epoch(
        create_train_dataset(
            mindrecords[0], cfg.data, cfg.augmentation, cfg.anchors, cfg.model.img_shape, batch_size=4, seed=7
        )
    )
    for x, y in zip(batches, again):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_eval_pipeline_and_sharding_partition_the_images(mindrecords, shapes):
    from nasfpn.data.pipeline import create_eval_dataset
    from nasfpn.data.transforms import preprocess_image

    cfg = make_config(*SMALL)
    full = _epoch(create_eval_dataset(mindrecords[1], cfg.model.img_shape, cfg.num_parallel_workers))
    ids = [int(b["img_id"][0, 0]) for b in full]
    assert len(ids) == 6 and all(b["image_shape"].tolist() == [[96, 96]] for b in full)
    name = f"{ids[0]:012d}.jpg"
    expected = preprocess_image(decode_image(os.path.join(shapes, "val2017", name)), (128, 128))
    np.testing.assert_array_equal(full[0]["image"][0], expected)
    parts = [
        {
            int(b["img_id"][0, 0])
            for b in _epoch(
                create_eval_dataset(
                    mindrecords[1], cfg.model.img_shape, cfg.num_parallel_workers, device_num=2, rank_id=r
                )
            )
        }
        for r in range(2)
    ]
    assert not parts[0] & parts[1] and parts[0] | parts[1] == set(ids)


def test_train_transform_without_crop_keeps_every_box():
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from nasfpn.data.transforms import train_transform

    cfg = make_config(*SMALL)
    matcher = AnchorMatcher(Anchors(cfg.anchors.spec(cfg.model.img_shape)))
    image = np.zeros((64, 96, 3), np.uint8)
    boxes = np.array([[4, 8, 30, 40], [20, 50, 60, 90]], np.float32)
    for seed in range(6):
        _, loc, label, num = train_transform(
            image,
            boxes,
            np.array([1, 2]),
            (128, 128),
            np.random.default_rng(seed),
            matcher,
            random_crop=False,
        )
        assert set(np.unique(label)) == {0, 1, 2}  # both boxes survive every time


# Where data lives: MindRecord prefixes, annotation paths, and which files count as shards.


def test_split_prefixes_are_the_release_names():
    assert (split_prefix(True), split_prefix(False)) == ("retinanet.mindrecord", "retinanet_eval.mindrecord")
    assert (TRAIN_PREFIX, EVAL_PREFIX) == (split_prefix(True), split_prefix(False))


def test_annotation_path_from_coco_root_unless_given():
    cfg = make_config("--coco_root=/data/coco")
    assert annotation_path(cfg, "val2017") == os.path.join(
        "/data/coco", "annotations", "instances_val2017.json"
    )
    given = make_config("--coco_root=/data/coco", "--anno_path=/elsewhere/a.json")
    assert annotation_path(given, "val2017") == "/elsewhere/a.json"


def test_only_numbered_shards_and_their_index_files_are_existing_outputs(tmp_path):
    names = [
        "p0",
        "p0.db",
        "p12",
        "p12.db",
        "p",
        "p.db",  # shards (and a single-file prefix)
        "p3bd",
        "p1.d",
        "p2db",
        "p.db.db",
        "pq0",
        "other0",
    ]  # not shards of prefix "p"
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = [os.path.basename(p) for p in existing_outputs(str(tmp_path), "p")]
    assert found == sorted(["p0", "p0.db", "p12", "p12.db", "p", "p.db"])
