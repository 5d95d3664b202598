"""COCO-format annotation files: class list, category ids, image ids (one mapping for everyone).

Class index = 1 + position of the category in the file's categories sorted by id; index 0 is
background. For COCO 2017 this is the standard 80-class order of `coco_classes` in the config.
"""
import json
import math
import os

from ..errors import UserError, UserFileNotFoundError


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
    if not os.path.isfile(path):
        raise AnnotationFileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    validate_coco(data, path)
    fill_pycocotools_fields(data)
    return data


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
            raise AnnotationError(f"{path}: {kind}s[{index}]: expected an object, got "
                                  f"{type(entry).__name__}")
        missing = [key for key in required if key not in entry]
        if missing:
            raise AnnotationError(f"{path}: {_entry_name(kind, index, entry)} lacks "
                                  f"{', '.join(missing)} (a COCO {kind} needs {', '.join(required)})")
        if not _is_integer(entry["id"]):
            raise AnnotationError(f"{path}: {kind}s[{index}]: id must be an integer, got "
                                  f"{entry['id']!r}")


def _check_bboxes(annotations, path):
    for index, ann in enumerate(annotations):
        bbox = ann["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == BBOX_LENGTH
                and all(_is_number(v) for v in bbox)):
            raise AnnotationError(f"{path}: {_entry_name('annotation', index, ann)}: bbox must be "
                                  f"{BBOX_LENGTH} numbers [x, y, width, height], got {bbox!r}")


def validate_coco(data, path):
    """Raise AnnotationError (naming `path` and the entry) unless `data` has the COCO layout."""
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object with 'images', 'annotations' and "
                              f"'categories' lists, got a {type(data).__name__}")
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


def class_names(coco):
    """['background', <category names in id order>]."""
    return ["background"] + [c["name"] for c in sorted_categories(coco)]


def category_to_class(coco):
    """category id -> class index (1..)."""
    return {c["id"]: i + 1 for i, c in enumerate(sorted_categories(coco))}


def class_to_category(coco):
    """class index (1..) -> category id."""
    return {i + 1: c["id"] for i, c in enumerate(sorted_categories(coco))}


def load_class_names(anno_json):
    """['background', <category names in id order>] of an annotation file (path)."""
    return class_names(load_coco_json(anno_json))


def category_ids(anno_json):
    """[category id of class 1, of class 2, ...] of an annotation file (path): index i-1 holds the
    category id of class index i (the inverse of the mapping create_data.py used)."""
    return [c["id"] for c in sorted_categories(load_coco_json(anno_json))]


def check_num_classes(coco, num_classes, path):
    """The network's num_classes must be background + the file's categories."""
    expected = len(coco["categories"]) + 1
    if num_classes != expected:
        raise AnnotationError(f"{path} has {expected - 1} categories, so --num_classes must be "
                              f"{expected} (background + categories), got {num_classes}")


def image_id_by_file_name(coco):
    """file name (and its stem) -> image id, for results named after image files."""
    ids = {}
    for image in coco["images"]:
        name = image["file_name"]
        ids[name] = image["id"]
        ids[os.path.splitext(os.path.basename(name))[0]] = image["id"]
    return ids
