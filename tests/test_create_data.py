"""create_data.py end to end, and boxes that come back where the pixels are after augmentation."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import create_data
from nasfpn.ops.boxes import Anchors
from nasfpn.data.coco_format import class_map, load_coco_json
from nasfpn.data.converters import find_mindrecord
from tests.conftest import REPO_ROOT, make_config

H, W = 96, 160  # not square, so a swapped x/y shows
# (x, y, w, h) of one white rectangle per image, category ids not starting at 1 and unordered.
RECTS = {11: (10, 20, 50, 40), 12: (90, 8, 60, 70), 13: (30, 40, 100, 50), 14: (5, 5, 30, 86)}
CATEGORIES = [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}]
CATEGORY_OF = {11: 7, 12: 3, 13: 7, 14: 3}


@pytest.fixture(scope="module")
def rect_root(tmp_path_factory):
    """A COCO-layout set: black images, one white rectangle each."""
    root = tmp_path_factory.mktemp("rects")
    for split in ("train2017", "val2017"):
        os.makedirs(root / split)
    os.makedirs(root / "annotations")
    images, anns = [], []
    for img_id, (x, y, w, h) in RECTS.items():
        image = np.zeros((H, W, 3), np.uint8)
        image[y : y + h, x : x + w] = 255
        for split in ("train2017", "val2017"):
            cv2.imwrite(str(root / split / f"{img_id}.png"), image)
        images.append({"id": img_id, "file_name": f"{img_id}.png", "height": H, "width": W})
        anns.append(
            {
                "id": img_id,
                "image_id": img_id,
                "category_id": CATEGORY_OF[img_id],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )
    for split in ("train2017", "val2017"):
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": CATEGORIES}, f)
    return root


def test_class_mapping_is_categories_sorted_by_id(rect_root):
    anno = str(rect_root / "annotations" / "instances_train2017.json")
    cmap = class_map(load_coco_json(anno))
    assert list(cmap.names) == ["background", "a", "b"]
    assert cmap.class_to_category == {1: 3, 2: 7}


@pytest.fixture(scope="module")
def converted(rect_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("mr")
    common = [f"--coco_root={rect_root}", f"--mindrecord_dir={out}", "--num_classes=3"]
    train = create_data.main(common)
    val = create_data.main(common + ["--is_training=False", "--num_shards=2"])
    return str(out), train, val


def test_cli_names_clamps_shards_and_maps_classes(converted):
    import mindspore.dataset as ds

    out, train, val = converted
    # 8 shards asked (release default), 4 images: clamped to 4; eval gets the release's eval prefix.
    assert sorted(os.listdir(out)) == sorted(
        [f"retinanet.mindrecord{i}{ext}" for i in range(4) for ext in ("", ".db")]
        + [f"retinanet_eval.mindrecord{i}{ext}" for i in range(2) for ext in ("", ".db")]
        + ["retinanet.mindrecord.dataset.json", "retinanet_eval.mindrecord.dataset.json"]
    )
    assert train == find_mindrecord(out, "retinanet.mindrecord") == os.path.join(out, "retinanet.mindrecord0")
    assert val == find_mindrecord(out, "retinanet_eval.mindrecord")
    rows = {
        int(r["img_id"][0]): r["annotation"].tolist()
        for r in ds.MindDataset(val, shuffle=False).create_dict_iterator(output_numpy=True, num_epochs=1)
    }
    # class index: 1 + position among categories sorted by id (3 -> 1, 7 -> 2)
    expected = {
        i: [[y, x, y + h, x + w, 1 if CATEGORY_OF[i] == 3 else 2]] for i, (x, y, w, h) in RECTS.items()
    }
    assert rows == expected


def test_cli_refuses_to_overwrite_and_missing_output_is_explained(converted, rect_root, tmp_path):
    out, train, _ = converted
    before = os.path.getmtime(train)
    result = subprocess.run(
        [
            sys.executable,
            "create_data.py",
            f"--coco_root={rect_root}",
            f"--mindrecord_dir={out}",
            "--num_classes=3",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "GLOG_v": "3"},
    )
    assert result.returncode == 2
    assert f"{train} already exists; pass --overwrite=True" in result.stderr
    assert os.path.getmtime(train) == before
    with pytest.raises(FileNotFoundError, match=r"no MindRecord 'nothing.mindrecord' in .*create_data.py"):
        find_mindrecord(str(tmp_path), "nothing.mindrecord")
    # a given --num_classes that contradicts the file is refused, before anything is written
    with pytest.raises(ValueError, match=r"has 2 categories, so --num_classes must be 3 .*, got 81"):
        create_data.main([f"--coco_root={rect_root}", f"--mindrecord_dir={tmp_path}", "--num_classes=81"])
    assert os.listdir(tmp_path) == []


def decode_targets(loc, anchors_cycxhw, prior_scaling=(0.1, 0.2)):
    """Inverse of the box coding, written out here: (t_cy, t_cx, t_h, t_w) -> (y1, x1, y2, x2)."""
    centre = loc[:, :2] * prior_scaling[0] * anchors_cycxhw[:, 2:] + anchors_cycxhw[:, :2]
    size = np.exp(loc[:, 2:] * prior_scaling[1]) * anchors_cycxhw[:, 2:]
    return np.concatenate([centre - size / 2, centre + size / 2], 1)


def test_train_pipeline_boxes_land_on_the_augmented_pixels(converted):
    """For every augmented sample, the box encoded in gt_loc must frame the white pixels."""
    from nasfpn.data.pipeline import create_train_dataset
    from nasfpn.data.transforms import MEAN_RGB, STD_RGB

    cfg = make_config("--img_shape=[128,128]", "--num_classes=3", "--anchor_size=[16,32,64,128,256]")
    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    data = create_train_dataset(
        converted[1],
        cfg.data,
        cfg.augmentation,
        cfg.anchors,
        cfg.model.img_shape,
        batch_size=2,
        seed=5,
        num_parallel_workers=1,
    )
    seen_flip_or_crop = 0
    for batch in data.create_dict_iterator(output_numpy=True, num_epochs=3):
        for image, loc, label, num in zip(
            batch["image"], batch["gt_loc"], batch["gt_label"], batch["num_match"]
        ):
            pos = np.flatnonzero(label)
            assert num[0] == len(pos) > 0 and len(set(label[pos].tolist())) == 1
            boxes = decode_targets(loc[pos], anchors.cycxhw[pos])
            np.testing.assert_allclose(boxes, np.repeat(boxes[:1], len(boxes), 0), atol=1e-4)
            grey = (image.transpose(1, 2, 0) * STD_RGB + MEAN_RGB).mean(2)
            ys, xs = np.nonzero(grey > (grey.max() + grey.min()) / 2)
            pixels = np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / 128
            np.testing.assert_allclose(boxes[0], pixels, atol=2.5 / 128)
            seen_flip_or_crop += not any(
                np.allclose(pixels, np.array([y, x, y + h, x + w]) / [H, W, H, W], atol=2.5 / 128)
                for x, y, w, h in RECTS.values()
            )
    assert seen_flip_or_crop > 0  # augmentation really moved boxes


def test_eval_pipeline_gives_back_original_shape_and_ids(converted):
    from nasfpn.data.pipeline import create_eval_dataset

    cfg = make_config("--img_shape=[128,128]", "--num_classes=3")
    batches = list(
        create_eval_dataset(
            converted[2], cfg.model.img_shape, cfg.num_parallel_workers, batch_size=3
        ).create_dict_iterator(output_numpy=True, num_epochs=1)
    )
    assert [len(b["img_id"]) for b in batches] == [3, 1]  # the remainder is kept at eval
    ids = sorted(int(i) for b in batches for i in b["img_id"][:, 0])
    assert ids == sorted(RECTS)
    assert all(b["image_shape"].tolist() == [[H, W]] * len(b["img_id"]) for b in batches)
    assert batches[0]["image"].shape == (3, 3, 128, 128) and batches[0]["image"].dtype == np.float32


@pytest.mark.parametrize("device_num", [2, 3])
def test_eval_shards_partition_images_even_when_uneven(converted, device_num):
    """4 images over 3 ranks: MindDataset alone would repeat one; each image must appear once."""
    from nasfpn.data.pipeline import create_eval_dataset

    cfg = make_config("--img_shape=[128,128]", "--num_classes=3")
    parts = [
        [
            int(i)
            for b in create_eval_dataset(
                converted[2], cfg.model.img_shape, cfg.num_parallel_workers, device_num=device_num, rank_id=r
            ).create_dict_iterator(output_numpy=True, num_epochs=1)
            for i in b["img_id"][:, 0]
        ]
        for r in range(device_num)
    ]
    flat = [i for part in parts for i in part]
    assert sorted(flat) == sorted(RECTS) and all(parts)


def test_streamed_chunks_keep_every_record(rect_root, tmp_path):
    """Rows go to the writer a few at a time; every image lands once, and no temporary is left."""
    import mindspore.dataset as ds
    from nasfpn.data.converters import Summary, coco_samples, write_mindrecord

    samples = coco_samples(
        str(rect_root / "annotations" / "instances_train2017.json"),
        str(rect_root / "train2017"),
        True,
        Summary(),
    )
    first, summary = write_mindrecord(samples, str(tmp_path), "c.mr", num_shards=3, chunk=3, progress=False)
    ids = [
        int(r["img_id"][0])
        for r in ds.MindDataset(first, shuffle=False).create_dict_iterator(output_numpy=True, num_epochs=1)
    ]
    assert sorted(ids) == sorted(RECTS) and summary.written == 4
    assert sorted(os.listdir(tmp_path)) == sorted(f"c.mr{i}{e}" for i in range(3) for e in ("", ".db"))
