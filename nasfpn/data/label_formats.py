"""Pascal VOC / LabelImg XML and YOLO (ultralytics, LabelImg) label folders -> one COCO-format dict
per split, and the seeded train / val split of a single-file export (docs/data.md#voc-and-yolo-folders).

create_data.py writes the dict as the split's ground truth beside the MindRecord and converts it
through the COCO path, so training, evaluation and the report read it like any COCO file. In it:
images get ids 1..N in the split's order, `file_name` relative to the split's image folder and
the image's width / height; categories get ids 1..K in the dataset's class order (VOC: classes.txt
or the sorted object names; YOLO: `names`, class c -> id c + 1); boxes are COCO [x, y, w, h] in
pixels, clipped to the image.

Bad input: a file that cannot be parsed (an XML without <size>, a YOLO line that is not
`class cx cy w h` numbers, a data.yaml whose `names` is not a list or a 0..K-1 dict) is an error
naming the file (and line); an object of an unknown class or a box outside its image is dropped and
counted, with the file (and line / object) in the summary's examples.
"""

import os
import xml.etree.ElementTree as ET

import numpy as np
import yaml

from nasfpn.core.errors import UserError
from nasfpn.data.transforms import ImageDecodeError, decode_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CLASS_LIST_FILE = "classes.txt"  # LabelImg's class list (YOLO mode; accepted for VOC too)
YOLO_DATA_FILE = "data.yaml"
EDGE_ROUNDING = 1e-6  # relative: decimals of a normalised coordinate are rounded when written


class LabelFormatError(UserError):
    """A VOC or YOLO label folder or file that cannot be read as such."""


# ---- COCO dict ----------------------------------------------------------------------------------
def coco_dict(class_names: list, images: list, boxes: list) -> dict:
    """images: (file_name, width, height) per image; boxes: per image a list of (x1, y1, x2, y2,
    class index 0..K-1). Ids: images 1..N, categories 1..K, annotations 1.. in order."""
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(class_names)],
    }
    for img_id, ((file_name, width, height), rows) in enumerate(zip(images, boxes), 1):
        coco["images"].append({"id": img_id, "file_name": file_name, "width": width, "height": height})
        for x1, y1, x2, y2, cls in rows:
            w, h = x2 - x1, y2 - y1
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": img_id,
                    "category_id": int(cls) + 1,
                    "bbox": [float(x1), float(y1), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
    return coco


def fit_box(box: tuple, width: int, height: int, summary, where: str) -> tuple | None:
    """The box (x1, y1, x2, y2) clipped to the image, or None (dropped and counted) when it has no
    area or lies wholly outside the image."""
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        summary.drop_box("box without area", where)
        return None
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        summary.drop_box("box outside its image", where)
        return None
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    # normalised YOLO boxes touching an edge come back a rounding error past it: not a clip
    if max(abs(a - b) for a, b in zip(clipped, box)) > EDGE_ROUNDING * max(width, height):
        summary.clipped_boxes += 1
    return clipped


def read_class_list(path: str) -> list:
    """Names of a one-name-a-line file (LabelImg's classes.txt), blank lines left out."""
    with open(path, encoding="utf-8-sig") as f:
        names = [line.strip() for line in f if line.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if not names or repeated:
        raise LabelFormatError(
            f"{path}: expected one class name a line, each once; "
            + (f"{', '.join(map(repr, repeated))} repeated" if repeated else "it is empty")
        )
    return names


# ---- Pascal VOC / LabelImg XML ------------------------------------------------------------------
def _xml_number(element, tag: str, path: str, where: str) -> float:
    node = element.find(tag)
    try:
        return float(node.text)
    except (AttributeError, TypeError, ValueError):
        raise LabelFormatError(f"{path}: {where} has no number <{tag}>") from None


def parse_voc_xml(path: str) -> tuple:
    """(file name, width, height, [(name, x1, y1, x2, y2, difficult), ...]) of one VOC XML, boxes in
    COCO's 0-based continuous pixels: VOC's corners are 1-based pixel indices, inclusive, so pixel
    xmin..xmax covers [xmin - 1, xmax]."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LabelFormatError(f"{path}: not a readable XML file ({exc})") from None
    size = root.find("size")
    if size is None:
        raise LabelFormatError(
            f"{path}: no <size> (the image's <width> and <height>, which Pascal VOC and LabelImg write)"
        )
    width, height = (_xml_number(size, tag, path, "<size>") for tag in ("width", "height"))
    if width <= 0 or height <= 0:
        raise LabelFormatError(
            f"{path}: <size> is {width:g} x {height:g}; expected a positive width and height"
        )
    objects = []
    for k, obj in enumerate(root.findall("object"), 1):
        where = f"object {k}"
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None:
            raise LabelFormatError(f"{path}: {where} ({name!r}) has no <bndbox>")
        xmin, ymin, xmax, ymax = (_xml_number(box, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append((name, xmin - 1.0, ymin - 1.0, xmax, ymax, difficult))
    return (root.findtext("filename") or "").strip(), int(width), int(height), objects


def _split_list(root: str, split: str) -> list:
    path = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        raise LabelFormatError(
            f"{path}: not found (a VOC folder lists each split's images there); give the split with "
            "--train_data_type / --val_data_type, or split Annotations/*.xml with --val_fraction"
        )
    with open(path, encoding="utf-8-sig") as f:
        return [line.split()[0] for line in f if line.strip()]


def _voc_image_name(image_dir: str, stem: str, xml_file_name: str) -> str:
    """The image of annotation `stem` in JPEGImages: stem + a known suffix, else the XML's
    <filename>, else stem.jpg (reported missing by the converter)."""
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        if os.path.isfile(os.path.join(image_dir, stem + suffix)):
            return stem + suffix
    if xml_file_name and os.path.isfile(os.path.join(image_dir, xml_file_name)):
        return xml_file_name
    return stem + ".jpg"


def voc_class_names(root: str, parsed: dict) -> tuple:
    """root/classes.txt when there, else the object names of every XML, sorted (the same for
    every split)."""
    listed = os.path.join(root, CLASS_LIST_FILE)
    if os.path.isfile(listed):
        return read_class_list(listed), f"classes from {listed}"
    names = sorted({obj[0] for _, _, _, objects in parsed.values() for obj in objects})
    if not names:
        raise LabelFormatError(f"{os.path.join(root, 'Annotations')}: no <object> in any XML file")
    return names, f"classes: the object names of {os.path.join(root, 'Annotations')}/*.xml, sorted"


def voc_to_coco(root: str, split: str, summary, whole_folder: bool = False) -> tuple:
    """(COCO dict, image folder, source files, classes rule) of split `split` of the VOC folder
    `root` (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt); `whole_folder`: every
    Annotations/*.xml, in name order (for --val_fraction)."""
    annotations = os.path.join(root, "Annotations")
    image_dir = os.path.join(root, "JPEGImages")
    if not os.path.isdir(annotations):
        raise LabelFormatError(
            f"{annotations}: not found; a Pascal VOC / LabelImg folder holds Annotations/*.xml, "
            "JPEGImages/ and ImageSets/Main/<split>.txt (--dataset_root)"
        )
    every_xml = sorted(n for n in os.listdir(annotations) if n.lower().endswith(".xml"))
    parsed = {os.path.splitext(n)[0]: parse_voc_xml(os.path.join(annotations, n)) for n in every_xml}
    names, rule = voc_class_names(root, parsed)
    stems = sorted(parsed) if whole_folder else _split_list(root, split)
    index_of = {name: k for k, name in enumerate(names)}
    images, boxes = [], []
    for stem in stems:
        xml = os.path.join(annotations, stem + ".xml")
        if stem not in parsed:
            raise LabelFormatError(f"{xml}: not found, but ImageSets/Main/{split}.txt lists {stem!r}")
        xml_name, width, height, objects = parsed[stem]
        rows = []
        for k, (name, *box, _difficult) in enumerate(objects, 1):
            where = f"{xml} object {k}"
            if name not in index_of:
                summary.drop_box("object of a class not in the class list", f"{where} ({name!r})")
                continue
            fitted = fit_box(box, width, height, summary, where)
            if fitted:
                rows.append((*fitted, index_of[name]))
        images.append((_voc_image_name(image_dir, stem, xml_name), width, height))
        boxes.append(rows)
    sources = [annotations, image_dir] + ([] if whole_folder else [os.path.join(root, "ImageSets", "Main")])
    return coco_dict(names, images, boxes), image_dir, sources, rule


# ---- YOLO (ultralytics data.yaml, LabelImg classes.txt) ------------------------------------------
def yolo_names(value, path: str) -> list:
    """The class names of data.yaml's `names`: a list, or a dict with keys 0..K-1."""
    if isinstance(value, dict):
        keys = sorted(value, key=str)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or sorted(keys) != list(
            range(len(keys))
        ):
            raise LabelFormatError(
                f"{path}: names: a dict must have the class indices 0..{len(keys) - 1} as keys, got {keys}"
            )
        value = [value[k] for k in range(len(keys))]
    if not isinstance(value, list) or not value:
        raise LabelFormatError(f"{path}: names: expected a list of class names or a dict index -> name")
    bad = [(k, n) for k, n in enumerate(value) if not isinstance(n, (str, int)) or not str(n).strip()]
    if bad:
        k, n = bad[0]
        raise LabelFormatError(f"{path}: names: entry {k} is {n!r}; expected a class name")
    names = [str(n).strip() for n in value]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LabelFormatError(f"{path}: names: {', '.join(map(repr, repeated))} repeated")
    return names


def yolo_layout(root: str, split: str) -> tuple:
    """(class names, image folder, classes source) of split `split` (train or val): data.yaml
    (ultralytics: `path`, `train` / `val` folders, `names`) or classes.txt (LabelImg) with
    images/<split>."""
    data_yaml = os.path.join(root, YOLO_DATA_FILE)
    if os.path.isfile(data_yaml):
        try:
            with open(data_yaml, encoding="utf-8-sig") as f:
                data = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise LabelFormatError(f"{data_yaml}: not readable YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict) or "names" not in data:
            raise LabelFormatError(f"{data_yaml}: expected a mapping with 'names' (and train / val folders)")
        names = yolo_names(data["names"], data_yaml)
        if "nc" in data and data["nc"] != len(names):
            raise LabelFormatError(f"{data_yaml}: nc is {data['nc']!r} but names has {len(names)} entries")
        base = os.path.join(root, str(data.get("path") or ""))
        folder = data.get(split) or os.path.join("images", split)
        if not isinstance(folder, str) or folder.lower().endswith(".txt"):
            raise LabelFormatError(
                f"{data_yaml}: {split}: {folder!r}; expected one image folder (list files are not read)"
            )
        return names, os.path.normpath(os.path.join(base, folder)), data_yaml
    listed = os.path.join(root, CLASS_LIST_FILE)
    if os.path.isfile(listed):
        return read_class_list(listed), os.path.join(root, "images", split), listed
    raise LabelFormatError(
        f"{root}: neither {YOLO_DATA_FILE} (ultralytics) nor {CLASS_LIST_FILE} (LabelImg) is there; "
        "a YOLO folder names its classes in one of them (--dataset_root)"
    )


def label_file_of(image_dir: str, rel_path: str) -> str:
    """The label file of an image: the ultralytics rule (the last `images` folder of the path
    replaced by `labels`, suffix .txt), else a .txt beside the image (LabelImg)."""
    image_path = os.path.join(image_dir, rel_path)
    stem = os.path.splitext(image_path)[0]
    parts = stem.split(os.sep)
    if "images" in parts:
        k = len(parts) - 1 - parts[::-1].index("images")
        ultralytics = os.sep.join(parts[:k] + ["labels"] + parts[k + 1 :]) + ".txt"
        if os.path.isfile(ultralytics):
            return ultralytics
    return stem + ".txt"


def parse_yolo_line(text: str, path: str, line_no: int) -> tuple:
    """(class index, cx, cy, w, h) normalised of one label line; a polygon (ultralytics
    segmentation: class x1 y1 x2 y2 ...) gives its bounding box."""
    where = f"{path} line {line_no}"
    parts = text.split()
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise LabelFormatError(f"{where}: expected 'class cx cy w h' numbers, got {text.strip()!r}") from None
    if len(numbers) != 5 and (len(numbers) < 7 or len(numbers) % 2 == 0):
        raise LabelFormatError(
            f"{where}: expected 5 numbers 'class cx cy w h' (or a class and polygon points), "
            f"got {len(numbers)}: {text.strip()!r}"
        )
    if numbers[0] != int(numbers[0]) or numbers[0] < 0:
        raise LabelFormatError(f"{where}: class {parts[0]!r} is not a class index (0, 1, ...)")
    if len(numbers) == 5:
        return int(numbers[0]), *numbers[1:]
    xs, ys = np.asarray(numbers[1::2]), np.asarray(numbers[2::2])
    return int(numbers[0]), (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, np.ptp(xs), np.ptp(ys)


def image_files_under(image_dir: str) -> list:
    """Image files under `image_dir` (recursively), relative paths in sorted order."""
    found = []
    for folder, dirs, files in os.walk(image_dir):
        dirs.sort()
        found += [
            os.path.relpath(os.path.join(folder, n), image_dir)
            for n in files
            if n.lower().endswith(IMAGE_SUFFIXES)
        ]
    return sorted(found)


def yolo_boxes(label_path: str, names: list, width: int, height: int, summary) -> list:
    """Pixel boxes (x1, y1, x2, y2, class) of one label file; no file: an image without objects."""
    if not os.path.isfile(label_path):
        return []
    rows = []
    with open(label_path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    for line_no, text in enumerate(lines, 1):
        if not text.strip():
            continue
        cls, cx, cy, w, h = parse_yolo_line(text, label_path, line_no)
        where = f"{label_path} line {line_no}"
        if cls >= len(names):
            summary.drop_box(f"class index past the {len(names)} names (0..{len(names) - 1})", where)
            continue
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        fitted = fit_box(box, width, height, summary, where)
        if fitted:
            rows.append((*fitted, cls))
    return rows


def yolo_to_coco(root: str, split: str, summary) -> tuple:
    """(COCO dict, image folder, source files, classes rule) of split `split` of the YOLO folder
    `root`. An image that cannot be decoded (its size is needed to read normalised boxes) is left
    out and counted."""
    names, image_dir, names_file = yolo_layout(root, split)
    if not os.path.isdir(image_dir):
        raise LabelFormatError(f"{image_dir}: image folder of split {split!r} not found ({names_file})")
    images, boxes = [], []
    for rel_path in image_files_under(image_dir):
        try:
            height, width = decode_image(os.path.join(image_dir, rel_path)).shape[:2]
        except ImageDecodeError:
            summary.skip("unreadable image", os.path.join(image_dir, rel_path))
            continue
        label_path = label_file_of(image_dir, rel_path)
        boxes.append(yolo_boxes(label_path, names, width, height, summary))
        images.append((rel_path, width, height))
    if not images:
        raise LabelFormatError(f"{image_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    labels_dir = os.path.dirname(label_file_of(image_dir, images[0][0]))
    return (
        coco_dict(names, images, boxes),
        image_dir,
        [names_file, image_dir, labels_dir],
        f"classes from {names_file}",
    )


# ---- one export, two splits -----------------------------------------------------------------------
def check_val_fraction(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise LabelFormatError(
            f"--val_fraction: expected a fraction in (0, 1) of the images to hold out for evaluation "
            f"(0: no split), got {value!r}"
        )


def split_coco(coco: dict, val_fraction: float, seed: int, is_training: bool, source: str) -> dict:
    """The training (is_training) or evaluation part of `coco`: round(val_fraction x N) images
    (at least 1) drawn by `seed` for evaluation, the rest for training, so two conversions with
    the same seed give complementary parts. Categories stay whole (the same class order)."""
    ids = sorted(image["id"] for image in coco["images"])
    n_val = max(1, int(round(val_fraction * len(ids))))
    if len(ids) - n_val < 1:
        raise LabelFormatError(
            f"{source}: {len(ids)} image(s); --val_fraction={val_fraction} leaves none for training"
        )
    held_out = set(np.asarray(ids)[np.random.default_rng(seed).permutation(len(ids))[:n_val]].tolist())
    keep = {i for i in ids if (i in held_out) != is_training}
    return {
        **coco,
        "images": [image for image in coco["images"] if image["id"] in keep],
        "annotations": [ann for ann in coco["annotations"] if ann["image_id"] in keep],
    }
