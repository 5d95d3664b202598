"""COCO-format annotation files: class list, category ids, image ids (one mapping for everyone).

Class indices (0 is background) follow one rule, `class_map`, used by conversion, training,
evaluation, infer.py and postprocess.py:
- by COCO name: when every category name of the file is one of the configured `coco_classes`
  (and no name repeats), a category's class index is the position of its name in coco_classes
  (person 1, car 3, dog 17, ... with the default 81 classes), as the release did, so the
  published 81-class checkpoint works on COCO subsets and on sets relabelled to COCO names;
- by file order otherwise: class index = 1 + position of the category in the file's categories
  sorted by id, and num_classes = 1 + the number of categories.
For COCO 2017 both rules give the standard order.

A model that carries its class list (nasfpn/model_files/description.py) is matched by name only,
`model_class_map`: category ids may be anything, and a renumbered file maps the same.
"""

import json
from dataclasses import dataclass
import math
import os

from nasfpn.config.flat import DEFAULT_CONFIG_PATH, ConfigError, read_yaml
from nasfpn.core.errors import UserError, UserFileNotFoundError


class AnnotationError(UserError):
    """An annotation file that is missing or malformed."""


class AnnotationFileNotFoundError(AnnotationError, UserFileNotFoundError):
    """The annotation file named does not exist."""


REQUIRED_IMAGE_KEYS = ("id", "file_name")
REQUIRED_CATEGORY_KEYS = ("id", "name")
REQUIRED_ANNOTATION_KEYS = ("id", "image_id", "bbox", "category_id")
BBOX_LENGTH = 4  # [x, y, width, height]


def load_coco_json(path):
    """A checked COCO-format annotation file (dict), with the fields pycocotools needs filled in.

    Raises AnnotationError naming the file (and the entry) for a missing file, invalid JSON, a
    top level that is not an object with images/annotations/categories lists, an image without
    id/file_name, a category without id/name, an annotation without id/image_id/bbox/category_id
    or whose bbox is not 4 numbers. A UTF-8 byte-order mark is accepted.
    """
    if os.path.isdir(path):
        raise AnnotationError(f"{path}: is a folder, expected an annotation file (COCO JSON)")
    if not os.path.isfile(path):
        raise AnnotationFileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc}){other_format_hint(path)}") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    validate_coco(data, path)
    fill_pycocotools_fields(data)
    return data


# Label files of other formats given where a COCO JSON is read: what converts them instead.
OTHER_FORMAT_HINTS = {
    ".xml": "a Pascal VOC / LabelImg annotation: convert its folder with create_data.py "
    "--create_dataset=voc --dataset_root=<folder holding Annotations/>",
    ".yaml": "a YOLO data.yaml: convert its folder with create_data.py --create_dataset=yolo "
    "--dataset_root=<folder holding data.yaml>",
    ".yml": "a YOLO data.yaml: convert its folder with create_data.py --create_dataset=yolo "
    "--dataset_root=<folder holding data.yaml>",
    ".txt": "a text label file: YOLO labels convert with create_data.py --create_dataset=yolo "
    "--dataset_root=DIR, the release's text list with --create_dataset=other",
}


def other_format_hint(path) -> str:
    """'; it looks like ...' for a file whose suffix names another label format, else ''."""
    hint = OTHER_FORMAT_HINTS.get(os.path.splitext(str(path))[1].lower())
    return f"; it looks like {hint} (docs/data.md#voc-and-yolo-folders)" if hint else ""


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_name(kind, index, entry):
    """'annotation id 7 (annotations[3])' or 'annotations[3]' when the entry has no usable id."""
    if isinstance(entry, dict) and _is_integer(entry.get("id")):
        return f"{kind} id {entry['id']} ({kind}s[{index}])"
    return f"{kind}s[{index}]"


def _check_entries(entries, kind, required, path):
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: {kind}s[{index}]: expected an object, got {type(entry).__name__}")
        missing = [key for key in required if key not in entry]
        if missing:
            raise AnnotationError(
                f"{path}: {_entry_name(kind, index, entry)} lacks "
                f"{', '.join(missing)} (a COCO {kind} needs {', '.join(required)})"
            )
        if not _is_integer(entry["id"]):
            raise AnnotationError(f"{path}: {kind}s[{index}]: id must be an integer, got {entry['id']!r}")


def _check_bboxes(annotations, path):
    for index, ann in enumerate(annotations):
        bbox = ann["bbox"]
        if not (
            isinstance(bbox, (list, tuple)) and len(bbox) == BBOX_LENGTH and all(_is_number(v) for v in bbox)
        ):
            raise AnnotationError(
                f"{path}: {_entry_name('annotation', index, ann)}: bbox must be "
                f"{BBOX_LENGTH} numbers [x, y, width, height], got {bbox!r}"
            )


def check_ground_truth_boxes(data, path):
    """AnnotationError for a ground-truth box evaluation cannot use: a negative or non-finite width
    or height (COCOeval would count it as an object no detection matches and lower the recall
    without a word; create_data.py drops such boxes and counts them)."""
    for index, ann in enumerate(data["annotations"]):
        width, height = ann["bbox"][2], ann["bbox"][3]
        if not (math.isfinite(width) and math.isfinite(height) and width >= 0 and height >= 0):
            raise AnnotationError(
                f"{path}: {_entry_name('annotation', index, ann)}: bbox {ann['bbox']!r} has a negative "
                "or non-finite width/height; fix or remove that annotation"
            )


def validate_coco(data, path):
    """Raise AnnotationError (naming `path` and the entry) unless `data` has the COCO layout."""
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{path}: expected a JSON object with 'images', 'annotations' and "
            f"'categories' lists, got a {type(data).__name__}"
        )
    data.setdefault("annotations", [])
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(f"{path}: expected a COCO file with a '{key}' list")
    _check_entries(data["images"], "image", REQUIRED_IMAGE_KEYS, path)
    _check_entries(data["categories"], "category", REQUIRED_CATEGORY_KEYS, path)
    _check_entries(data["annotations"], "annotation", REQUIRED_ANNOTATION_KEYS, path)
    _check_bboxes(data["annotations"], path)


def fill_pycocotools_fields(data):
    """Give annotations the fields pycocotools' evaluation reads but many labelling tools omit:
    `iscrowd` (default 0) and `area` (the box's width x height). Returns how many were filled."""
    filled = 0
    for ann in data["annotations"]:
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            filled += 1
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
            filled += 1
    return filled


def sorted_categories(coco):
    return sorted(coco["categories"], key=lambda c: c["id"])


BY_COCO_NAME = "by COCO name"
BY_FILE_ORDER = "by file order"
BY_MODEL_NAME = "by the model's class names"


@dataclass(frozen=True)
class ClassMap:
    """How a file's categories map onto the network's class indices (see the module docstring)."""

    rule: str  # BY_COCO_NAME or BY_FILE_ORDER
    names: tuple  # class names by class index, background first
    category_to_class: dict  # category id -> class index (1..)
    class_to_category: dict  # class index -> category id (only classes the file has)

    @property
    def num_classes(self):
        return len(self.names)

    def describe(self):
        """One line for summaries and logs."""
        if self.rule == BY_COCO_NAME:
            return (
                f"classes: {self.rule} onto coco_classes ({len(self.category_to_class)} categories "
                f"of the file -> indices {sorted(self.category_to_class.values())} of "
                f"{self.num_classes})"
            )
        return (
            f"classes: {self.rule} (categories sorted by id -> 1..{self.num_classes - 1}; their "
            "names are not all in coco_classes)"
        )


def release_class_names():
    """The release's 81 class names (background first): default_config.yaml's coco_classes, read
    from the file itself so a run's own --coco_classes does not change them."""
    return list(read_yaml(DEFAULT_CONFIG_PATH)[0]["coco_classes"])


def are_coco_names(names):
    """Whether every one of `names` (object classes, no background) is one of the 80 COCO names."""
    known = set(release_class_names()[1:])
    names = list(names)
    return bool(names) and all(name in known for name in names)


def class_map(coco, coco_classes=None):
    """The ClassMap of a loaded COCO-format file for the configured class names (background
    first); without coco_classes, by file order."""
    categories = sorted_categories(coco)
    names = [c["name"] for c in categories]
    known = list(coco_classes or [])[1:]  # index 0 is background, never an object class
    if names and len(set(names)) == len(names) and set(names) <= set(known):
        to_class = {c["id"]: known.index(c["name"]) + 1 for c in categories}
        return ClassMap(
            BY_COCO_NAME, tuple(coco_classes), to_class, {index: cid for cid, index in to_class.items()}
        )
    to_class = {c["id"]: i + 1 for i, c in enumerate(categories)}
    return ClassMap(
        BY_FILE_ORDER, ("background", *names), to_class, {index: cid for cid, index in to_class.items()}
    )


def _shown_names(names, limit=6):
    names = list(names)
    return ", ".join(repr(n) for n in names[:limit]) + (
        f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    )


def model_class_map(coco, model_names, path):
    """(ClassMap by name onto the model's classes `model_names` (background first), the file's
    category names the model lacks, the model's class names the file lacks). A repeated category
    name is an AnnotationError (its boxes could not be told apart)."""
    names = [c["name"] for c in sorted_categories(coco)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AnnotationError(
            f"{path}: category names {_shown_names(repeated)} appear more than once; "
            "classes are matched by name"
        )
    index_of = {name: i for i, name in enumerate(model_names) if i > 0}
    to_class = {c["id"]: index_of[c["name"]] for c in coco["categories"] if c["name"] in index_of}
    unknown = [n for n in names if n not in index_of]
    absent = [n for n in list(model_names)[1:] if n not in set(names)]
    cmap = ClassMap(
        BY_MODEL_NAME, tuple(model_names), to_class, {index: cid for cid, index in to_class.items()}
    )
    return cmap, unknown, absent


def unknown_classes_message(path, unknown, model_names, source):
    return (
        f"{path}: categories {_shown_names(unknown)} are not classes of {source} (its classes: "
        f"{_shown_names(list(model_names)[1:])}); classes are matched by name"
    )


def absent_classes_message(path, absent, source):
    return (
        f"{path} has no category for {len(absent)} class(es) of {source}: {_shown_names(absent)}; "
        "their detections are left out of the results"
    )


def check_num_classes(cmap, num_classes, path):
    """The network's num_classes must be the class count of the file's ClassMap."""
    if num_classes == cmap.num_classes:
        return
    if cmap.rule == BY_COCO_NAME:
        raise AnnotationError(
            f"{path}: every category name is one of --coco_classes, so classes map "
            f"by name onto its {cmap.num_classes} classes: --num_classes must be "
            f"{cmap.num_classes}, got {num_classes} (or give --coco_classes as "
            "background + your classes)"
        )
    raise AnnotationError(
        f"{path} has {cmap.num_classes - 1} categories, so --num_classes must be "
        f"{cmap.num_classes} (background + categories, numbered by file order: "
        f"their names are not all in --coco_classes), got {num_classes}"
    )


def image_id_by_file_name(coco):
    """file name (and its stem) -> image id, for results named after image files."""
    ids = {}
    for image in coco["images"]:
        name = image["file_name"]
        ids[name] = image["id"]
        ids[os.path.splitext(os.path.basename(name))[0]] = image["id"]
    return ids


def model_class_names_and_ids(anno_path, description, source, log):
    """Like class_names_and_ids for a model that carries its classes (a ModelDescription): its
    names; category ids from the annotation file by name when given (a category the model lacks,
    or a class the file lacks, is a warning: the model's other classes are still detected), else
    the ids the model carries."""
    names = list(description.class_names)
    if not anno_path:
        return names, description.category_of_class(), {}
    coco = load_coco_json(anno_path)
    cmap, unknown, absent = model_class_map(coco, names, anno_path)
    if unknown:
        log.warning(unknown_classes_message(anno_path, unknown, names, source))
    if absent:
        log.warning(absent_classes_message(anno_path, absent, source))
    return names, cmap.class_to_category, image_id_by_file_name(coco)


def class_names_and_ids(anno_path, coco_classes, num_classes):
    """(class names by index, class index -> category id, file name -> image id) for results on
    image files: from the annotation file when given (by the rule create_data.py used), else the
    configured coco_classes with no ids."""
    if not anno_path:
        names = list(coco_classes)
        if len(names) != num_classes:
            raise ConfigError(
                f"--coco_classes has {len(names)} names but --num_classes is "
                f"{num_classes}; give --anno_path for another dataset's classes"
            )
        return names, {}, {}
    coco = load_coco_json(anno_path)
    cmap = class_map(coco, coco_classes)
    check_num_classes(cmap, num_classes, anno_path)
    return list(cmap.names), cmap.class_to_category, image_id_by_file_name(coco)
