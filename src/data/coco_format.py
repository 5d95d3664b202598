"""COCO-format annotation files: class list, category ids, image ids (one mapping for everyone).

Class index = 1 + position of the category in the file's categories sorted by id; index 0 is
background. For COCO 2017 this is the standard 80-class order of `coco_classes` in the config.
"""
import json
import os
from ..errors import UserError


class AnnotationError(UserError):
    """An annotation file that is missing or malformed."""


def load_coco_json(path):
    if not os.path.isfile(path):
        raise AnnotationError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(f"{path}: expected a COCO file with a '{key}' list")
    data.setdefault("annotations", [])
    return data


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
