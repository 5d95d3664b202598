"""Datasets -> MindRecord shards with the release's schema
(docs/conventions.md#mindrecord-files-and-annotation-paths).

Schema: img_id int32[1], image bytes (the encoded file as stored), annotation int32[-1, 5] rows
(y1, x1, y2, x2, class_index) in pixels, rounded. Bad samples are skipped and counted by reason,
never a crash half-way; shards are written in a temporary folder and moved in at the end.

An image without objects (a negative, kept by `empty_images`) is stored with the single row
NO_OBJECT_ROW: MindDataset returns an empty [0, 5] array as one uninitialised int32 scalar, so an
empty annotation cannot be stored as it is. Readers take `object_rows(annotation)`.
"""

import collections
import glob
import json
import os
import shutil
import struct
import tempfile

import numpy as np

from nasfpn.data.coco_format import are_coco_names, class_map, load_coco_json
from nasfpn.data.dataset_record import (
    RecordedImage,
    remove_dataset_record,
    write_dataset_record,
)
from nasfpn.data.image_files import TruncatedImageError, read_image_file
from nasfpn.data.transforms import ImageDecodeError
from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.core.interrupts import deferred_signals, report_progress
from nasfpn.core.locks import writer_lock
from nasfpn.core.storage import (
    StorageError,
    check_free_space,
    existing_ancestor,
    remove_empty_folders_made,
    free_bytes,
    megabytes,
    raise_if_disk_full,
    storage_errors,
)

INT32_MIN, INT32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)
LEGACY_TEMP_PREFIX = ".mindrecord-"
EXAMPLES_PER_REASON = 3  # file names kept per skip reason, so the summary says which files

# All zero: class 0 (background) and zero area, so it is no box under any reading of the rows.
NO_OBJECT_ROW = np.zeros((1, 5), np.int32)
EMPTY_IMAGES_CHOICES = ("auto", "keep", "skip")

SCHEMA = {
    "img_id": {"type": "int32", "shape": [1]},
    "image": {"type": "bytes"},
    "annotation": {"type": "int32", "shape": [-1, 5]},
}


class ConversionError(UserError):
    """A conversion that cannot start (bad paths, existing output, malformed annotation file)."""


class Summary:
    """Counts of what was written and skipped, by reason."""

    def __init__(self):
        self.written = 0
        self.skipped_images = collections.Counter()
        self.skipped_examples = collections.defaultdict(list)
        self.dropped_boxes = collections.Counter()
        self.dropped_examples = collections.defaultdict(list)
        self.clipped_boxes = 0
        self.class_rule = None  # ClassMap.describe() of a COCO-format conversion
        self.empty_images = None  # "keep" or "skip" once decided, with empty_rule saying why
        self.empty_rule = ""
        self.empty_written = 0  # images without objects among the written ones
        self.written_images = []  # (img_id, path, height, width) of each written image, in order

    def skip(self, reason, path=None, full_path=False, name=None):
        """Count a skipped image; the first few are named by `name`, else by the file name of `path`
        (`full_path`: the whole path, for a file that was looked for and not found there)."""
        self.skipped_images[reason] += 1
        if name is None and path is not None:
            name = os.path.abspath(path) if full_path else os.path.basename(path)
        if name is not None and len(self.skipped_examples[reason]) < EXAMPLES_PER_REASON:
            self.skipped_examples[reason].append(name)

    def drop_box(self, reason, example=None):
        self.dropped_boxes[reason] += 1
        if example is not None and len(self.dropped_examples[reason]) < EXAMPLES_PER_REASON:
            self.dropped_examples[reason].append(str(example))

    def __str__(self):
        lines = [f"images written: {self.written}"]
        if self.empty_images == "keep":
            lines.append(f"  without objects (kept as negatives): {self.empty_written} ({self.empty_rule})")
        lines.append(f"images skipped: {sum(self.skipped_images.values())}")
        for reason, n in sorted(self.skipped_images.items()):
            examples = self.skipped_examples.get(reason)
            more = ", ..." if examples and n > len(examples) else ""
            lines.append(f"  {reason}: {n}" + (f" ({', '.join(examples)}{more})" if examples else ""))
        lines.append(f"boxes dropped: {sum(self.dropped_boxes.values())}")
        for reason, n in sorted(self.dropped_boxes.items()):
            examples = self.dropped_examples.get(reason)
            more = ", ..." if examples and n > len(examples) else ""
            lines.append(f"  {reason}: {n}" + (f" ({', '.join(examples)}{more})" if examples else ""))
        lines.append(f"boxes clipped to their image (kept): {self.clipped_boxes}")
        if self.class_rule:
            lines.append(self.class_rule)
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


def check_image_id(img_id, source, file_name):
    """Refuse an image id that the int32 `img_id` column cannot hold (it would wrap silently)."""
    if (
        isinstance(img_id, bool)
        or not isinstance(img_id, (int, np.integer))
        or not INT32_MIN <= int(img_id) <= INT32_MAX
    ):
        raise ConversionError(
            f"{source}: image {file_name!r} has id {img_id!r}; the MindRecord "
            f"stores ids as int32 ({INT32_MIN}..{INT32_MAX}): renumber the images"
        )
    return int(img_id)


def empty_images_rule(setting, classes_are_coco_names):
    """("keep" or "skip", why) for images without objects under --empty_images=`setting`.

    auto keeps them (negatives: their detections are false positives, and training sees
    background-only images), except when every category name is one of the 80 COCO names
    (coco_format.are_coco_names): that is COCO (or a part of it), where the release left them out,
    and its reported AP was measured without them. Own classes keep them, whether they are listed
    in a configured coco_classes or not."""
    if setting not in EMPTY_IMAGES_CHOICES:
        raise ConversionError(
            f"--empty_images: expected one of {', '.join(EMPTY_IMAGES_CHOICES)}, got {setting!r}"
        )
    if setting != "auto":
        return setting, f"--empty_images={setting}"
    if classes_are_coco_names:
        return "skip", "--empty_images=auto, COCO class names: the release's rule"
    return "keep", "--empty_images=auto, own classes"


def _decide_empty_images(summary, setting, classes_are_coco_names):
    summary.empty_images, summary.empty_rule = empty_images_rule(setting, classes_are_coco_names)
    return summary.empty_images == "keep"


def image_path_of(image_dir: str, file_name: str) -> str:
    """The file of a COCO `file_name` in `image_dir`: image_dir/file_name, else, for a name with a
    folder prefix (Label Studio's `images/x.jpg`, CVAT's subsets), the name with its leading folders
    left out one by one (image_dir given as that folder); else image_dir/file_name (reported missing
    under that path)."""
    direct = os.path.join(image_dir, file_name)
    if os.path.isfile(direct):
        return direct
    parts = [p for p in file_name.replace("\\", "/").split("/") if p not in ("", ".")]
    for k in range(1, len(parts)):
        shorter = os.path.join(image_dir, *parts[k:])
        if os.path.isfile(shorter):
            return shorter
    return direct


OUTSIDE_IMAGE_DIR = (
    "file name leaves the image folder ('..' or an absolute path; --allow_outside_image_dir=True reads it)"
)


def image_file_path(image_dir: str, file_name: str, summary, allow_outside: bool = False) -> str | None:
    """The path of an annotation's `file_name` in `image_dir`; None (the image skipped and counted
    by its name as written) when the name leads out of the folder - an absolute path or one that
    climbs with '..' - unless `allow_outside`. Judged on the names as written: a link the user put
    into the image folder is followed."""
    path = image_path_of(image_dir, file_name)
    if allow_outside:
        return path
    folder = os.path.normpath(os.path.abspath(image_dir))
    inside = os.path.normpath(os.path.abspath(path))
    if os.path.isabs(file_name) or not inside.startswith(folder.rstrip(os.sep) + os.sep):
        summary.skip(OUTSIDE_IMAGE_DIR, name=repr(file_name))
        return None
    return path


def coco_samples(
    anno_path,
    image_dir,
    is_training,
    summary,
    coco_classes=None,
    empty_images="auto",
    allow_outside: bool = False,
):
    """(img_id, image path, rows) per usable image of a COCO-format file.

    Class indices follow `coco_format.class_map(coco, coco_classes)` (by COCO name or by file
    order); the summary records which rule was used.

    An image with no annotation at all is a negative: yielded with no rows when
    `empty_images_rule` keeps it, else skipped (counted). Skips (counted): images whose boxes are
    all unusable (unknown category, zero area); at eval, images with a crowd annotation. Boxes with
    a category id absent from `categories`, and annotations of an image id absent from `images`,
    are dropped and counted (with the first few named). An image id outside int32 is
    an error naming the file (checked for every image before anything is written). A file name
    that leaves image_dir is skipped (image_file_path) unless `allow_outside`.
    """
    coco = load_coco_json(anno_path)
    for image in coco["images"]:
        check_image_id(image["id"], anno_path, image["file_name"])
    cmap = class_map(coco, coco_classes)
    summary.class_rule = cmap.describe()
    category_names = [c["name"] for c in coco["categories"]]
    keep_empty = _decide_empty_images(summary, empty_images, are_coco_names(category_names))
    to_class = cmap.category_to_class
    by_image = collections.defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    listed = {image["id"] for image in coco["images"]}
    for image_id in sorted(set(by_image) - listed, key=str):  # their boxes have no image to go to
        for ann in by_image[image_id]:
            summary.drop_box(
                "annotation of an image id not in 'images'", f"id {ann.get('id', '?')} -> image {image_id}"
            )
    for image in coco["images"]:
        path = image_file_path(image_dir, image["file_name"], summary, allow_outside)
        if path is None:
            continue
        anns = by_image.get(image["id"], [])
        if not anns:
            if keep_empty:
                yield image["id"], path, _pixel_rows([], [], summary)
            else:
                summary.skip(f"without objects ({summary.empty_rule})", path)
            continue
        if not is_training and any(a.get("iscrowd", 0) for a in anns):
            summary.skip("crowd annotation (eval)", path)
            continue
        boxes, classes = [], []
        for ann in anns:
            if ann["category_id"] not in to_class:
                summary.drop_box(f"unknown category id {ann['category_id']}")
                continue
            x, y, w, h = ann["bbox"]
            boxes.append((x, y, x + w, y + h))
            classes.append(to_class[ann["category_id"]])
        rows = _pixel_rows(boxes, classes, summary)
        if not len(rows):  # labelled objects, none usable: not a negative
            summary.skip("no usable box", path)
            continue
        yield image["id"], path, rows


def text_samples(
    anno_path, image_dir, num_classes, summary, empty_images="auto", allow_outside: bool = False
):
    """The release's text format: `file_name x1,y1,x2,y2,cls ...` per line, cls = class index
    (1..num_classes-1). The line number (from 0) is the image id. A UTF-8 byte-order mark is
    accepted (editors on Windows add one; it would otherwise become part of the first file name).
    A line with a file name only is an image without objects, kept or skipped by
    `empty_images_rule` (auto keeps it: a text list has no class names, so it is own data)."""
    if not os.path.isfile(anno_path):
        raise ConversionError(f"annotation file not found: {anno_path}")
    try:
        with open(anno_path, encoding="utf-8-sig") as f:
            lines = [line.split() for line in f if line.strip()]
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{anno_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    keep_empty = _decide_empty_images(summary, empty_images, classes_are_coco_names=False)
    for img_id, parts in enumerate(lines):
        check_image_id(img_id, anno_path, parts[0])
        path = image_file_path(image_dir, parts[0], summary, allow_outside)
        if path is None:
            continue
        if len(parts) == 1:
            if keep_empty:
                yield img_id, path, _pixel_rows([], [], summary)
            else:
                summary.skip(f"without objects ({summary.empty_rule})", path)
            continue
        boxes, classes = [], []
        for token in parts[1:]:
            values = token.split(",")
            try:
                x1, y1, x2, y2, cls = (int(float(v)) for v in values)
            except ValueError:
                raise ConversionError(
                    f"{anno_path} line {img_id + 1}: expected x1,y1,x2,y2,cls numbers, got {token!r}"
                ) from None
            if cls == 0:  # 0 is the background: a list with 0-based classes (YOLO's) loses a class
                summary.drop_box(
                    "class index 0, the background (0-based YOLO classes: --create_dataset=yolo)",
                    f"{anno_path} line {img_id + 1}",
                )
                continue
            if not 1 <= cls < num_classes:
                summary.drop_box(f"class index outside 1..{num_classes - 1}")
                continue
            boxes.append((x1, y1, x2, y2))
            classes.append(cls)
        rows = _pixel_rows(boxes, classes, summary)
        if not len(rows):
            summary.skip("no usable box", path)
            continue
        yield img_id, path, rows


def unique_samples(samples, summary):
    """Drop (and count) a sample whose image id or file was already listed: stored twice it would
    weigh double in training and be evaluated twice."""
    seen_ids, seen_files = set(), set()
    for img_id, path, rows in samples:
        file_key = os.path.normcase(os.path.realpath(path))
        if img_id in seen_ids:
            summary.skip("duplicate image (id listed before)", path)
            continue
        if file_key in seen_files:
            summary.skip("duplicate image (file listed before)", path)
            continue
        seen_ids.add(img_id)
        seen_files.add(file_key)
        yield img_id, path, rows


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
    return sorted(
        os.path.join(mindrecord_dir, n)
        for n in os.listdir(mindrecord_dir)
        if n.startswith(prefix)
        and n[len(prefix) :].removesuffix(".db").isdigit()
        or n in (prefix, prefix + ".db")
    )


def _records(samples, summary, progress, desc):
    """Yield one MindRecord row per sample whose image file is whole and decodable (one image in
    memory at a time)."""
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc=desc, unit="img")
    for img_id, path, rows in samples:
        if not os.path.isfile(path):
            summary.skip("missing image file", path, full_path=True)
            continue
        try:
            encoded, image = read_image_file(path)
        except TruncatedImageError:
            summary.skip("truncated image file", path)
            continue
        except ImageDecodeError:
            summary.skip("unreadable image", path)
            continue
        written = (int(img_id), path, int(image.shape[0]), int(image.shape[1]))
        if not len(rows):  # a negative, kept (the samples yield no rows only then)
            summary.empty_written += 1
            summary.written_images.append(written)
            yield {
                "img_id": np.array([img_id], np.int32),
                "image": encoded,
                "annotation": NO_OBJECT_ROW.copy(),
            }
            continue
        rows = _clip_to_image(rows, *image.shape[:2], summary)
        if not len(rows):
            summary.skip("no usable box", path)
            continue
        summary.written_images.append(written)
        yield {"img_id": np.array([img_id], np.int32), "image": encoded, "annotation": rows.astype(np.int32)}


def object_rows(annotation):
    """The object rows (y1, x1, y2, x2, class >= 1) of a record's annotation column: without the
    NO_OBJECT_ROW of an image without objects (and whatever shape MindDataset gives an empty one)."""
    rows = np.asarray(annotation, np.int32)
    if rows.ndim != 2:
        return np.zeros((0, 5), np.int32)
    return rows[rows[:, 4] >= 1]


def lock_path(mindrecord_dir, prefix):
    return os.path.join(mindrecord_dir, f".{prefix}.lock")


def temp_dir_prefix(prefix):
    return f".{prefix}.tmp-"


def output_lock(mindrecord_dir, prefix):
    """Hold an exclusive lock on `prefix` in `mindrecord_dir` for the whole conversion: a second
    conversion into the same output refuses at once (ConversionError); see nasfpn/core/locks.py."""
    path = lock_path(mindrecord_dir, prefix)
    return writer_lock(
        path,
        lambda holder: (
            f"{mindrecord_dir}: another conversion (pid {holder.get('pid', 'unknown')}) is writing '{prefix}' there now "
            f"(lock {path}); wait for it to finish or use another --mindrecord_dir or --prefix"
        ),
        error_type=ConversionError,
    )


def remove_stale_temp_dirs(mindrecord_dir, prefix, log=print):
    """Remove the temporary folders of earlier conversions of `prefix` that were killed. Only call
    while holding output_lock(prefix): then no live run of `prefix` owns one. Returns their paths."""
    stale = sorted(glob.glob(os.path.join(glob.escape(mindrecord_dir), temp_dir_prefix(prefix) + "*")))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        log(f"removed {path}, the temporary folder of an interrupted conversion")
    # Earlier versions named their temporary folders '.mindrecord-*' whatever the prefix and took
    # no lock, so whether one is still in use cannot be known: name them, leave them.
    for path in sorted(glob.glob(os.path.join(glob.escape(mindrecord_dir), LEGACY_TEMP_PREFIX + "*"))):
        log(
            f"warning: {path} looks like the temporary folder of an interrupted conversion by an "
            "earlier version; delete it if no conversion is running"
        )
    return stale


def write_mindrecord(
    samples,
    mindrecord_dir,
    prefix,
    num_shards=8,
    overwrite=False,
    summary=None,
    progress=True,
    chunk=64,
    record=None,
):
    """Write the samples' images and boxes into `num_shards` shards; returns (first shard, summary).

    `record` (a dataset_record.DatasetRecord without images) is completed with the written images
    and written beside the shards once they are all in place (<prefix>.dataset.json); an older
    record of `prefix` is removed before the old shards are. Unreadable, truncated, missing or
    duplicate images are skipped (counted). Rows are streamed to the writer `chunk` at a time, so memory stays bounded on COCO-sized sets. Nothing appears under
    the final names unless the whole conversion finished. The whole conversion holds a lock on
    `prefix` in `mindrecord_dir`: a concurrent second run refuses instead of mixing shards.
    """
    summary = summary or Summary()
    existed = existing_ancestor(mindrecord_dir)
    os.makedirs(mindrecord_dir, exist_ok=True)
    try:
        return _write_mindrecord(
            samples, mindrecord_dir, prefix, num_shards, overwrite, summary, progress, chunk, record
        )
    except BaseException:  # refused, failed or stopped: no empty folder of ours stays
        remove_empty_folders_made(mindrecord_dir, existed)
        raise


def _write_mindrecord(
    samples, mindrecord_dir, prefix, num_shards, overwrite, summary, progress, chunk, record=None
):
    with output_lock(mindrecord_dir, prefix):
        remove_stale_temp_dirs(mindrecord_dir, prefix)
        existing = existing_outputs(mindrecord_dir, prefix)
        if existing and not overwrite:
            raise ConversionError(
                f"{existing[0]} already exists; pass --overwrite=True to replace "
                f"the {len(existing)} file(s) of '{prefix}' in {mindrecord_dir}"
            )
        # (id, path, boxes) only: cheap; it gives the shard count up front
        samples = list(unique_samples(samples, summary))
        check_free_space(
            mindrecord_dir, expected_mindrecord_bytes(samples), f"--mindrecord_dir={mindrecord_dir}"
        )
        num_shards = max(1, min(int(num_shards), len(samples)))
        with storage_errors(mindrecord_dir, "writing MindRecord shards into"):
            _write_shards(samples, mindrecord_dir, prefix, num_shards, existing, summary, progress, chunk)
            if record is not None:
                complete = record.with_images(
                    recorded_images(summary, record),
                    prefix=prefix,
                    num_shards=num_shards,
                    empty_images_applied=summary.empty_images,
                    empty_images_rule=summary.empty_rule,
                )
                write_dataset_record(mindrecord_dir, prefix, complete)
    return shard_paths(mindrecord_dir, prefix, num_shards)[0], summary


# Per record besides the encoded image: its boxes, id and index entry (generous).
RECORD_OVERHEAD_BYTES = 4096
# MindSpore's writer refuses to write while the disk has at most 10 MB free (kMinFreeDiskSize in
# its shard_utils.h, compared in whole MB): the shards need that much room beyond their own size.
MINDSPORE_MIN_FREE_BYTES = 11 * 2**20


def expected_mindrecord_bytes(samples):
    """About the room the shards need: the encoded images as stored, a small part per record, and
    the free space MindSpore's writer insists on keeping."""
    return MINDSPORE_MIN_FREE_BYTES + sum(
        os.path.getsize(path) + RECORD_OVERHEAD_BYTES for _, path, _ in samples if os.path.isfile(path)
    )


def recorded_images(summary, record):
    """RecordedImage per written image, its file name relative to the record's image folder
    (as the annotation file names it)."""
    return [
        RecordedImage(img_id, os.path.relpath(path, record.image_dir).replace(os.sep, "/"), height, width)
        for img_id, path, height, width in summary.written_images
    ]


def _write_shards(samples, mindrecord_dir, prefix, num_shards, existing, summary, progress, chunk):
    """Write into a temporary folder, then replace `existing` by the new shards."""
    tmp_dir = tempfile.mkdtemp(prefix=temp_dir_prefix(prefix), dir=mindrecord_dir)
    kept = (
        f"the {len(existing)} earlier file(s) of '{prefix}' are unchanged"
        if existing
        else "nothing was written"
    )
    report_progress(
        lambda: (
            f"no shard of '{prefix}' in {mindrecord_dir} is complete (shards appear when the whole "
            f"conversion is); {kept}"
        )
    )
    try:
        try:
            _write_records(samples, os.path.join(tmp_dir, prefix), num_shards, summary, progress, chunk)
        except RuntimeError as exc:  # MindSpore's error for a failed write does not say why
            raise_if_disk_full(mindrecord_dir, exc, "writing MindRecord shards into")
            if "No free disk" in str(exc):  # its own minimum (the disk filled meanwhile)
                raise StorageError(
                    f"writing MindRecord shards into {mindrecord_dir}: "
                    f"{megabytes(free_bytes(mindrecord_dir))} free, MindSpore's writer stops below "
                    f"{megabytes(MINDSPORE_MIN_FREE_BYTES)}; free some space or write elsewhere"
                ) from None
            raise
        with deferred_signals():  # a signal now would leave old and new shards mixed
            remove_dataset_record(mindrecord_dir, prefix)  # it would describe the shards removed next
            for old in existing:
                os.remove(old)
            for name in sorted(os.listdir(tmp_dir)):
                os.replace(os.path.join(tmp_dir, name), os.path.join(mindrecord_dir, name))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _write_records(samples, first_shard, num_shards, summary, progress, chunk):
    from mindspore.mindrecord import FileWriter

    prefix = os.path.basename(first_shard)
    writer = FileWriter(first_shard, shard_num=num_shards, overwrite=True)
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


def find_mindrecord(mindrecord_dir, prefix):
    """The first shard of `prefix` in `mindrecord_dir`, or a clear error saying how to make it."""
    for candidate in (os.path.join(mindrecord_dir, prefix + "0"), os.path.join(mindrecord_dir, prefix)):
        if os.path.isfile(candidate):
            return candidate
    raise UserFileNotFoundError(
        f"no MindRecord '{prefix}' in {mindrecord_dir}; create it with create_data.py (see docs/data.md)"
    )


class BrokenMindRecordError(UserError):
    """A MindRecord shard that is truncated, lacks its index (.db) or cannot be opened."""


REMAKE = "copy it again from where it was made, or re-create it with create_data.py --overwrite=True"


def shard_header(path):
    """The JSON header at the start of a MindRecord shard (8-byte little-endian length, then the
    text); None when it cannot be parsed (the file is then left to MindSpore's own reader)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if not 0 < length < 2**26:
                return None
            header = json.loads(f.read(length))
        return header if isinstance(header, dict) else None
    except (OSError, ValueError, struct.error):
        return None


def expected_shard_size(header):
    """Bytes a complete shard has: header, full pages, then its last page's used part (MindRecord
    writes pages at header_size + page_id * page_size)."""
    pages = header.get("page") or []
    if not pages:
        return int(header["header_size"])
    last = max(pages, key=lambda page: int(page["page_id"]))
    return (
        int(header["header_size"]) + int(last["page_id"]) * int(header["page_size"]) + int(last["page_size"])
    )


def mindspore_error_reason(exc):
    """The line of a MindSpore dataset RuntimeError that says what is wrong: its `[ERROR] ...`
    line (the first line is a generic 'Exception thrown from dataset pipeline')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith("[ERROR]")), lines[0] if lines else "")
    return reason.removeprefix("[ERROR]").strip()[:300]


def check_mindrecord(first_shard):
    """Refuse, before a run builds anything, a MindRecord whose shards are missing, lack their .db
    index, or are shorter than their header says (truncated by a copy or a full disk); then let
    MindSpore open it. Returns the number of records."""
    folder = os.path.dirname(first_shard)
    header = shard_header(first_shard)
    names = header.get("shard_addresses") if header else None
    shards = [os.path.join(folder, os.path.basename(n)) for n in names] if names else [first_shard]
    for shard in shards:
        if not os.path.isfile(shard):
            raise BrokenMindRecordError(
                f"{shard}: missing, but {first_shard} lists it as one of its {len(shards)} shards; {REMAKE}"
            )
        if not os.path.isfile(shard + ".db"):
            raise BrokenMindRecordError(
                f"{shard}: its index file {os.path.basename(shard)}.db is "
                f"missing (a MindRecord shard needs both); {REMAKE}"
            )
        shard_info = shard_header(shard)
        if shard_info is not None and "header_size" in shard_info:
            size, expected = os.path.getsize(shard), expected_shard_size(shard_info)
            if size < expected:
                raise BrokenMindRecordError(
                    f"{shard}: truncated ({size} bytes, its header says {expected}); {REMAKE}"
                )
    import mindspore.dataset as ds

    try:
        return ds.MindDataset(first_shard, columns_list=["img_id"], shuffle=False).get_dataset_size()
    except RuntimeError as exc:
        reason = mindspore_error_reason(exc)
        raise BrokenMindRecordError(
            f"{first_shard}: not a readable MindRecord ({reason}); {REMAKE}"
        ) from None
