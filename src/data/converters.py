"""Datasets -> MindRecord shards with the release's schema
(docs/conventions.md#mindrecord-files-and-annotation-paths).

Schema: img_id int32[1], image bytes (the encoded file as stored), annotation int32[-1, 5] rows
(y1, x1, y2, x2, class_index) in pixels, rounded. Bad samples are skipped and counted by reason,
never a crash half-way; shards are written in a temporary folder and moved in at the end.
"""
import collections
import os
import shutil
import tempfile

import numpy as np

from .coco_format import category_to_class, load_coco_json
from .transforms import ImageDecodeError, decode_image
from ..errors import UserError

SCHEMA = {"img_id": {"type": "int32", "shape": [1]},
          "image": {"type": "bytes"},
          "annotation": {"type": "int32", "shape": [-1, 5]}}


class ConversionError(UserError):
    """A conversion that cannot start (bad paths, existing output, malformed annotation file)."""


class Summary:
    """Counts of what was written and skipped, by reason."""

    def __init__(self):
        self.written = 0
        self.skipped_images = collections.Counter()
        self.dropped_boxes = collections.Counter()
        self.clipped_boxes = 0

    def skip(self, reason):
        self.skipped_images[reason] += 1

    def drop_box(self, reason):
        self.dropped_boxes[reason] += 1

    def __str__(self):
        lines = [f"images written: {self.written}",
                 f"images skipped: {sum(self.skipped_images.values())}"]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.skipped_images.items())]
        lines.append(f"boxes dropped: {sum(self.dropped_boxes.values())}")
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.dropped_boxes.items())]
        lines.append(f"boxes clipped to their image (kept): {self.clipped_boxes}")
        return "\n".join(lines)


def _pixel_rows(boxes_xyxy, classes, summary):
    """(x1, y1, x2, y2) boxes -> rounded (N, 5) int32 rows (y1, x1, y2, x2, cls), empty ones dropped.
    Clipping to the image happens once the image is decoded (write_mindrecord)."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    rows = np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]], 1).round()
    valid = (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1])
    for _ in range(int((~valid).sum())):
        summary.drop_box("zero-area box")
    classes = np.asarray(classes, np.int64).reshape(-1)
    return np.concatenate([rows[valid], classes[valid, None]], 1).astype(np.int32)


def coco_samples(anno_path, image_dir, is_training, summary):
    """(img_id, image path, rows) per usable image of a COCO-format file.

    Skips (counted): images with no usable box; at eval, images with a crowd annotation. Boxes with
    a category id absent from `categories` are dropped and counted.
    """
    coco = load_coco_json(anno_path)
    to_class = category_to_class(coco)
    by_image = collections.defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann.get("image_id")].append(ann)
    for image in coco["images"]:
        anns = by_image.get(image["id"], [])
        if not is_training and any(a.get("iscrowd", 0) for a in anns):
            summary.skip("crowd annotation (eval)")
            continue
        boxes, classes = [], []
        for ann in anns:
            if ann.get("category_id") not in to_class:
                summary.drop_box(f"unknown category id {ann.get('category_id')}")
                continue
            x, y, w, h = ann["bbox"]
            boxes.append((x, y, x + w, y + h))
            classes.append(to_class[ann["category_id"]])
        rows = _pixel_rows(boxes, classes, summary)
        if not len(rows):
            summary.skip("no usable box")
            continue
        yield image["id"], os.path.join(image_dir, image["file_name"]), rows


def text_samples(anno_path, image_dir, num_classes, summary):
    """The release's text format: `file_name x1,y1,x2,y2,cls ...` per line, cls = class index
    (1..num_classes-1). The line number (from 0) is the image id."""
    if not os.path.isfile(anno_path):
        raise ConversionError(f"annotation file not found: {anno_path}")
    with open(anno_path, encoding="utf-8") as f:
        lines = [line.split() for line in f if line.strip()]
    for img_id, parts in enumerate(lines):
        boxes, classes = [], []
        for token in parts[1:]:
            values = token.split(",")
            try:
                x1, y1, x2, y2, cls = (int(float(v)) for v in values)
            except ValueError:
                raise ConversionError(f"{anno_path} line {img_id + 1}: expected x1,y1,x2,y2,cls "
                                      f"numbers, got {token!r}") from None
            if not 1 <= cls < num_classes:
                summary.drop_box(f"class index outside 1..{num_classes - 1}")
                continue
            boxes.append((x1, y1, x2, y2))
            classes.append(cls)
        rows = _pixel_rows(boxes, classes, summary)
        if not len(rows):
            summary.skip("no usable box")
            continue
        yield img_id, os.path.join(image_dir, parts[0]), rows


def _clip_to_image(rows, height, width, summary):
    clipped = rows.copy()
    clipped[:, [0, 2]] = np.clip(rows[:, [0, 2]], 0, height)
    clipped[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, width)
    summary.clipped_boxes += int((clipped != rows).any(1).sum())
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    for _ in range(int((~valid).sum())):
        summary.drop_box("zero-area box")
    return clipped[valid]


def shard_paths(mindrecord_dir, prefix, num_shards):
    if num_shards == 1:
        return [os.path.join(mindrecord_dir, prefix)]
    return [os.path.join(mindrecord_dir, f"{prefix}{i}") for i in range(num_shards)]


def existing_outputs(mindrecord_dir, prefix):
    if not os.path.isdir(mindrecord_dir):
        return []
    return sorted(os.path.join(mindrecord_dir, n) for n in os.listdir(mindrecord_dir)
                  if n.startswith(prefix) and n[len(prefix):].removesuffix(".db").isdigit()
                  or n in (prefix, prefix + ".db"))


def _records(samples, summary, progress, desc):
    """Yield one MindRecord row per sample whose image can be read (one image in memory at a time)."""
    if progress:
        from tqdm import tqdm
        samples = tqdm(samples, desc=desc, unit="img")
    for img_id, path, rows in samples:
        if not os.path.isfile(path):
            summary.skip("missing image file")
            continue
        with open(path, "rb") as f:
            encoded = f.read()
        try:
            height, width = decode_image(encoded).shape[:2]
        except ImageDecodeError:
            summary.skip("unreadable image")
            continue
        rows = _clip_to_image(rows, height, width, summary)
        if not len(rows):
            summary.skip("no usable box")
            continue
        yield {"img_id": np.array([img_id], np.int32), "image": encoded,
               "annotation": rows.astype(np.int32)}


def write_mindrecord(samples, mindrecord_dir, prefix, num_shards=8, overwrite=False,
                     summary=None, progress=True, chunk=64):
    """Write the samples' images and boxes into `num_shards` shards; returns (first shard, summary).

    Unreadable or missing images are skipped (counted). Rows are streamed to the writer `chunk`
    at a time, so memory stays bounded on COCO-sized sets. Nothing appears under the final names
    unless the whole conversion finished.
    """
    from mindspore.mindrecord import FileWriter
    summary = summary or Summary()
    existing = existing_outputs(mindrecord_dir, prefix)
    if existing and not overwrite:
        raise ConversionError(f"{existing[0]} already exists; pass --overwrite=True to replace "
                              f"the {len(existing)} file(s) of '{prefix}' in {mindrecord_dir}")
    samples = list(samples)  # (id, path, boxes) only: cheap; it gives the shard count up front
    num_shards = max(1, min(int(num_shards), len(samples)))
    os.makedirs(mindrecord_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".mindrecord-", dir=mindrecord_dir)
    try:
        writer = FileWriter(os.path.join(tmp_dir, prefix), shard_num=num_shards, overwrite=True)
        writer.add_schema(SCHEMA, "nasfpn detection")
        buffer = []
        for record in _records(samples, summary, progress, f"writing {prefix}"):
            buffer.append(record)
            summary.written += 1
            if len(buffer) == chunk:
                writer.write_raw_data(buffer)
                buffer = []
        if not summary.written:
            raise ConversionError(f"no usable image for {prefix}:\n{summary}")
        if buffer:
            writer.write_raw_data(buffer)
        writer.commit()
        for old in existing:
            os.remove(old)
        for name in sorted(os.listdir(tmp_dir)):
            os.replace(os.path.join(tmp_dir, name), os.path.join(mindrecord_dir, name))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return shard_paths(mindrecord_dir, prefix, num_shards)[0], summary


def mindrecord_files(mindrecord_dir, prefix):
    """The first shard of `prefix` (what MindDataset is given; it finds the other shards)."""
    return find_mindrecord(mindrecord_dir, prefix)


def find_mindrecord(mindrecord_dir, prefix):
    """The first shard of `prefix` in `mindrecord_dir`, or a clear error saying how to make it."""
    for candidate in (os.path.join(mindrecord_dir, prefix + "0"), os.path.join(mindrecord_dir, prefix)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"no MindRecord '{prefix}' in {mindrecord_dir}; create it with "
                            f"create_data.py (see README, 'Data')")
