"""The label formats people have (nasfpn/data/label_formats.py, create_data.py --create_dataset=voc /
yolo, --val_fraction): the same images and boxes written here as COCO, Pascal VOC and YOLO by
writers of this file (not the converters' code) convert to the same MindRecord rows and evaluate
to the same AP; a single-file export with folder-prefixed names splits by seed; bad input is a
one-line error or a counted drop naming the file and line."""

import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest

import create_data
from nasfpn.core.errors import UserError
from nasfpn.data.coco_format import class_map, load_coco_json
from nasfpn.data.converters import Summary, object_rows
from nasfpn.data.dataset_record import read_dataset_record
from nasfpn.data.label_formats import LabelFormatError, parse_voc_xml, voc_to_coco, yolo_to_coco
from nasfpn.evaluation.coco_metrics import coco_evaluate

H, W = 72, 120  # not square: a swapped width / height shows
NAMES = ("bolt", "nut", "washer")  # not COCO names: classes by the dataset's order
COCO_IDS = (4, 7, 9)  # category ids of the COCO file, increasing in NAMES order
# Per image: (x, y, w, h, class 0..2) in integer pixels; image 3 has no object (a negative).
BOXES = (
    [(10, 12, 30, 20, 0), (60, 30, 40, 36, 2)],
    [(0, 0, 25, 40, 1)],
    [(70, 20, 50, 52, 0), (5, 40, 20, 20, 1), (40, 8, 16, 16, 2)],
    [],
    [(33, 11, 44, 55, 1)],
)


def image_bytes(index):
    """A distinct PNG per image (random pixels, seeded)."""
    pixels = np.random.default_rng(index).integers(0, 255, (H, W, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def stem(index):
    return f"part_{index:02d}"


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def write_coco(root):
    """COCO: root/images/*.png and root/labels.json (ids 1..N in file order)."""
    images, annotations = [], []
    for i, boxes in enumerate(BOXES):
        put(os.path.join(root, "images", stem(i) + ".png"), image_bytes(i))
        images.append({"id": i + 1, "file_name": stem(i) + ".png", "width": W, "height": H})
        for x, y, w, h, c in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": COCO_IDS[c],
                    "bbox": [x, y, w, h],
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(COCO_IDS, NAMES)]
    put(
        os.path.join(root, "labels.json"),
        json.dumps({"images": images, "annotations": annotations, "categories": categories}),
    )
    return os.path.join(root, "labels.json"), os.path.join(root, "images")


def voc_xml(file_name, objects, size=True):
    """A Pascal VOC annotation: 1-based inclusive pixel corners (pixels x+1..x+w cover [x, x+w])."""
    parts = ["<annotation>", f"<folder>JPEGImages</folder><filename>{file_name}</filename>"]
    if size:
        parts.append(f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>")
    for name, (x, y, w, h) in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
            f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
        )
    return "\n".join(parts + ["</annotation>"])


def write_voc(root, split="train"):
    """VOC: Annotations/, JPEGImages/, ImageSets/Main/<split>.txt; no classes.txt, so the classes are
    the sorted object names (NAMES is sorted)."""
    for i, boxes in enumerate(BOXES):
        put(os.path.join(root, "JPEGImages", stem(i) + ".png"), image_bytes(i))
        objects = [(NAMES[c], (x, y, w, h)) for x, y, w, h, c in boxes]
        put(os.path.join(root, "Annotations", stem(i) + ".xml"), voc_xml(stem(i) + ".png", objects))
    put(
        os.path.join(root, "ImageSets", "Main", f"{split}.txt"),
        "".join(stem(i) + "\n" for i in range(len(BOXES))),
    )
    return root


def write_yolo(root, split="train"):
    """ultralytics: data.yaml (names as a dict), images/<split>, labels/<split>, normalised centre
    boxes with 0-based classes; a negative has no label file."""
    names = "\n".join(f"  {k}: {name}" for k, name in enumerate(NAMES))
    put(os.path.join(root, "data.yaml"), f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    for i, boxes in enumerate(BOXES):
        put(os.path.join(root, "images", split, stem(i) + ".png"), image_bytes(i))
        if boxes:
            lines = [
                f"{c} {(x + w / 2) / W:.10f} {(y + h / 2) / H:.10f} {w / W:.10f} {h / H:.10f}\n"
                for x, y, w, h, c in boxes
            ]
            put(os.path.join(root, "labels", split, stem(i) + ".txt"), "".join(lines))
    return root


def convert(args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        create_data.main(["--num_shards=1", *args])
    return out.getvalue()


def mindrecord_rows(first_shard):
    """(img_id, image bytes, object rows) of every record, by image id."""
    import mindspore.dataset as ds

    rows = {}
    for record in ds.MindDataset(first_shard, shuffle=False).create_dict_iterator(
        output_numpy=True, num_epochs=1
    ):
        rows[int(record["img_id"][0])] = (
            record["image"].tobytes(),
            object_rows(record["annotation"]).tolist(),
        )
    return rows


def expected_rows():
    """What every format must give: (y1, x1, y2, x2, class 1..3) per box, image ids 1..N."""
    return {
        i + 1: (image_bytes(i), [[y, x, y + h, x + w, c + 1] for x, y, w, h, c in boxes])
        for i, boxes in enumerate(BOXES)
    }


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory):
    """The set written as COCO, VOC and YOLO, each converted (training split) into its own folder:
    format -> (MindRecord folder, ground-truth JSON)."""
    base = tmp_path_factory.mktemp("formats")
    anno, images = write_coco(str(base / "coco"))
    done = {}
    for name, args in (
        ("coco", ["--create_dataset=coco", f"--anno_path={anno}", f"--train_image_dir={images}"]),
        ("voc", ["--create_dataset=voc", f"--dataset_root={write_voc(str(base / 'voc'))}"]),
        ("yolo", ["--create_dataset=yolo", f"--dataset_root={write_yolo(str(base / 'yolo'))}"]),
    ):
        out = str(base / f"mr_{name}")
        os.makedirs(out)
        printed = convert([*args, f"--mindrecord_dir={out}", "--num_classes=4"])
        gt = anno if name == "coco" else os.path.join(out, "annotations", "instances_train2017.json")
        done[name] = (out, gt, printed)
    return done


def test_coco_voc_and_yolo_give_the_same_rows(three_formats):
    want = expected_rows()
    for name, (out, gt, printed) in three_formats.items():
        got = mindrecord_rows(os.path.join(out, "retinanet.mindrecord"))
        assert got == want, name
        assert list(class_map(load_coco_json(gt)).names) == ["background", *NAMES], name
        if name != "coco":
            record = read_dataset_record(os.path.join(out, "retinanet.mindrecord"))
            assert record.class_names == ("background", *NAMES) and record.source_format == name
            assert record.annotation_path == os.path.abspath(gt) and record.image_count == len(BOXES)
            assert os.path.abspath(os.path.dirname(os.path.dirname(out))) in record.options["sources"][0]
            assert f"--coco_root={out}" in printed and "--num_classes=4" in printed, printed
            assert (
                "images without objects" not in printed
                and "without objects (kept as negatives): 1" in printed
            )


def test_the_written_ground_truth_is_the_coco_boxes(three_formats):
    """VOC's corners come back exactly; YOLO's normalised boxes to the rounding of 10 written
    decimals times the image side (120 x 5e-11 pixels)."""
    coco = load_coco_json(three_formats["coco"][1])
    want = sorted(
        (a["image_id"], COCO_IDS.index(a["category_id"]) + 1, *a["bbox"]) for a in coco["annotations"]
    )
    for name in ("voc", "yolo"):
        written = load_coco_json(three_formats[name][1])
        assert [(i["id"], i["width"], i["height"]) for i in written["images"]] == [
            (i + 1, W, H) for i in range(len(BOXES))
        ]
        got = sorted((a["image_id"], a["category_id"], *a["bbox"]) for a in written["annotations"])
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g[:2] == w[:2]
            np.testing.assert_allclose(g[2:], w[2:], rtol=0, atol=1e-8 if name == "yolo" else 0)


def test_one_detection_set_evaluates_to_the_same_ap_on_each(three_formats):
    """Detections by class index: each box shifted by a few pixels with a score, a false positive on
    the negative image and one missed box; mapped to each file's category ids."""
    detections = []
    for i, boxes in enumerate(BOXES):
        for k, (x, y, w, h, c) in enumerate(boxes[:2]):
            detections.append(
                (i + 1, c + 1, [x + 1.5 * k, y + 2.0, w - 1.0, h + 0.5 * i], 0.9 - 0.1 * k - 0.05 * i)
            )
    detections.append((4, 2, [10.0, 10.0, 30.0, 30.0], 0.95))
    aps = {}
    for name, (_, gt, _) in three_formats.items():
        to_category = class_map(load_coco_json(gt)).class_to_category
        results = [
            {"image_id": i, "category_id": to_category[c], "bbox": box, "score": s}
            for i, c, box, s in detections
        ]
        stats, _ = coco_evaluate(gt, results, list(range(1, len(BOXES) + 1)))
        aps[name] = stats
    assert 0.2 < aps["coco"]["AP"] < 0.9, aps["coco"]  # a set that tells right from wrong
    for name in ("voc", "yolo"):
        for key, value in aps["coco"].items():
            assert aps[name][key] == pytest.approx(value, abs=1e-12), (name, key)


# ---- the single-file export, split by seed -----------------------------------------------------------
def test_a_single_file_export_splits_by_seed_and_resolves_folder_prefixes(tmp_path):
    """Label Studio's result.json names images/x.png; --image_dir is that images folder."""
    anno, images = write_coco(str(tmp_path / "export"))
    coco = json.load(open(anno))
    for image in coco["images"]:
        image["file_name"] = "images/" + image["file_name"]
    json.dump(coco, open(anno, "w"))
    out = str(tmp_path / "mr")
    os.makedirs(out)
    common = [
        "--create_dataset=coco",
        f"--anno_path={anno}",
        f"--image_dir={images}",
        f"--mindrecord_dir={out}",
    ]
    convert([*common, "--val_fraction=0.4", "--seed=3"])
    convert([*common, "--val_fraction=0.4", "--seed=3", "--is_training=False"])
    train = mindrecord_rows(os.path.join(out, "retinanet.mindrecord"))
    val = mindrecord_rows(os.path.join(out, "retinanet_eval.mindrecord"))
    assert len(val) == 2 and len(train) == 3 and not set(train) & set(val)
    assert {**train, **val} == expected_rows()
    for split, rows in (("train2017", train), ("val2017", val)):
        written = load_coco_json(os.path.join(out, "annotations", f"instances_{split}.json"))
        assert sorted(i["id"] for i in written["images"]) == sorted(rows)
        assert {a["image_id"] for a in written["annotations"]} <= set(rows)
        assert [c["name"] for c in written["categories"]] == list(NAMES)
    with pytest.raises(UserError, match=r"instances_train2017.json already exists; pass --overwrite=True"):
        convert([*common, "--val_fraction=0.4", "--seed=3"])


def test_a_missing_image_is_reported_with_the_full_path_it_tried(tmp_path):
    anno, images = write_coco(str(tmp_path / "export"))
    os.remove(os.path.join(images, stem(1) + ".png"))
    out = str(tmp_path / "mr")
    os.makedirs(out)
    printed = convert(
        [
            "--create_dataset=coco",
            f"--anno_path={anno}",
            f"--image_dir={images}",
            f"--mindrecord_dir={out}",
            "--num_classes=4",
        ]
    )
    assert f"missing image file: 1 ({os.path.join(os.path.abspath(images), stem(1) + '.png')})" in printed, (
        printed
    )


# ---- bad input --------------------------------------------------------------------------------------
def one_line_error(error_type, call, *fragments):
    with pytest.raises(error_type) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_voc_xml_without_size_is_an_error_naming_the_file(tmp_path):
    root = write_voc(str(tmp_path / "voc"))
    xml = os.path.join(root, "Annotations", stem(2) + ".xml")
    put(xml, voc_xml(stem(2) + ".png", [("nut", (1, 2, 3, 4))], size=False))
    one_line_error(LabelFormatError, lambda: parse_voc_xml(xml), f"{xml}: no <size>")
    one_line_error(LabelFormatError, lambda: voc_to_coco(root, "train", Summary()), f"{xml}: no <size>")


def test_voc_objects_of_unknown_classes_and_boxes_outside_are_counted_with_their_file(tmp_path):
    root = write_voc(str(tmp_path / "voc"))
    put(os.path.join(root, "classes.txt"), "bolt\nnut\nwasher\n")
    xml = os.path.join(root, "Annotations", stem(1) + ".xml")
    put(
        xml,
        voc_xml(
            stem(1) + ".png", [("nut", (0, 0, 25, 40)), ("screw", (1, 1, 5, 5)), ("bolt", (W + 5, 3, 9, 9))]
        ),
    )
    summary = Summary()
    coco, *_ = voc_to_coco(root, "train", summary)
    assert sum(1 for a in coco["annotations"] if a["image_id"] == 2) == 1
    text = str(summary)
    assert f"object of a class not in the class list: 1 ({xml} object 2 ('screw'))" in text, text
    assert f"box outside its image: 1 ({xml} object 3)" in text, text
    one_line_error(
        LabelFormatError,
        lambda: voc_to_coco(str(tmp_path / "none"), "train", Summary()),
        "Annotations: not found; a Pascal VOC / LabelImg folder holds",
    )


def test_yolo_lines_wrong_length_or_class_past_names_name_file_and_line(tmp_path):
    root = write_yolo(str(tmp_path / "yolo"))
    label = os.path.join(root, "labels", "train", stem(0) + ".txt")
    put(label, "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    one_line_error(
        LabelFormatError,
        lambda: yolo_to_coco(root, "train", Summary()),
        f"{label} line 2: expected 5 numbers 'class cx cy w h'",
        "got 4",
    )
    put(label, "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n")
    summary = Summary()
    coco, *_ = yolo_to_coco(root, "train", summary)
    text = str(summary)
    assert f"class index past the 3 names (0..2): 1 ({label} line 2)" in text, text
    assert f"box outside its image: 1 ({label} line 3)" in text, text
    assert summary.clipped_boxes == 1  # line 4 reaches past the right edge
    [clipped] = [a for a in coco["annotations"] if a["image_id"] == 1 and a["bbox"][0] > 100]
    assert clipped["bbox"][0] + clipped["bbox"][2] == W


@pytest.mark.parametrize(
    "names, fragment",
    [
        ("{0: bolt, 2: nut}", "names: a dict must have the class indices 0..1 as keys, got [0, 2]"),
        ("[bolt, null]", "names: entry 1 is None; expected a class name"),
        ("[bolt, bolt]", "names: 'bolt' repeated"),
        ("bolt", "names: expected a list of class names or a dict index -> name"),
    ],
)
def test_a_bad_names_entry_is_an_error_naming_data_yaml(tmp_path, names, fragment):
    root = write_yolo(str(tmp_path / "yolo"))
    put(os.path.join(root, "data.yaml"), f"train: images/train\nnames: {names}\n")
    one_line_error(
        LabelFormatError,
        lambda: yolo_to_coco(root, "train", Summary()),
        f"{os.path.join(root, 'data.yaml')}: {fragment}",
    )


def test_labelimg_yolo_with_classes_txt_and_list_names(tmp_path):
    root = write_yolo(str(tmp_path / "yolo"))
    os.remove(os.path.join(root, "data.yaml"))
    put(os.path.join(root, "classes.txt"), "\n".join(NAMES) + "\n")
    coco, image_dir, sources, rule = yolo_to_coco(root, "train", Summary())
    assert [c["name"] for c in coco["categories"]] == list(NAMES)
    assert image_dir == os.path.join(root, "images", "train") and "classes.txt" in rule
    assert len(coco["annotations"]) == sum(len(b) for b in BOXES)


@pytest.mark.parametrize("value", ["1.5", "-0.2", "1"])
def test_val_fraction_outside_0_1_is_refused(tmp_path, value):
    root = write_voc(str(tmp_path / "voc"))
    out = str(tmp_path / "mr")
    os.makedirs(out)
    one_line_error(
        UserError,
        lambda: convert(
            [
                "--create_dataset=voc",
                f"--dataset_root={root}",
                f"--mindrecord_dir={out}",
                f"--val_fraction={value}",
            ]
        ),
        "--val_fraction: expected a fraction in (0, 1)",
    )
    assert os.listdir(out) == []


def test_an_unknown_create_dataset_names_the_formats():
    one_line_error(UserError, lambda: create_data.main(["--create_dataset=labelme"]), "voc", "yolo")


def test_other_formats_given_as_coco_or_text_say_what_converts_them(tmp_path):
    """The messages that pointed nowhere: a VOC XML read as COCO JSON, class 0 in a text list."""
    from nasfpn.data.coco_format import AnnotationError, load_coco_json
    from nasfpn.data.converters import text_samples

    xml = tmp_path / "a.xml"
    xml.write_text(voc_xml("a.png", []))
    one_line_error(
        AnnotationError,
        lambda: load_coco_json(str(xml)),
        f"{xml}: not valid JSON",
        "it looks like a Pascal VOC / LabelImg annotation: convert its folder with create_data.py "
        "--create_dataset=voc",
    )
    listing = tmp_path / "list.txt"
    listing.write_text("a.png 1,2,30,40,0 5,6,20,20,1\n")
    summary = Summary()
    list(text_samples(str(listing), str(tmp_path), 3, summary))
    assert (
        f"class index 0, the background (0-based YOLO classes: --create_dataset=yolo): 1 ({listing} line 1)"
    ) in str(summary), str(summary)
