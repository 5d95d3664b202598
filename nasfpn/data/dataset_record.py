"""The dataset record: what a MindRecord was made from, written beside its shards.

`<mindrecord_dir>/<prefix>.dataset.json` holds the class names (background first) and the rule
that mapped the source's categories onto them, the source annotation file (absolute path and
sha256), the image folder, the split, every written image (id, file name, decoded size) and the
conversion options. create_data.py (and every converter writing a MindRecord) writes it
atomically and only after the shards are complete, so a record present means complete shards;
train.py, eval.py and the browser read it instead of asking for the dataset again
(docs/data.md#the-dataset-record).

A MindRecord made before the record existed has none: `read_dataset_record` then returns None
and the consumers fall back to their options.
"""

import datetime
import json
import os
from dataclasses import asdict, dataclass, field, replace

from nasfpn.core.atomic import write_json_atomic
from nasfpn.core.errors import UserError
from nasfpn.core.files import sha256_of

RECORD_VERSION = 1
RECORD_SUFFIX = ".dataset.json"
BY_CLASS_INDEX = "by class index (text list)"  # the release's text format: no names


class DatasetRecordError(UserError):
    """A dataset record that cannot be read, or that contradicts what a command was given."""


@dataclass(frozen=True)
class RecordedImage:
    """One image as written into the MindRecord: its id, its name in the annotation file, and
    its decoded size."""

    id: int
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class DatasetRecord:
    """What a MindRecord was made from (see the module docstring)."""

    num_classes: int
    class_names: tuple | None  # background first; None when the source names no classes
    class_rule: str  # coco_format.BY_COCO_NAME, BY_FILE_ORDER, or BY_CLASS_INDEX
    category_ids: tuple | None  # category id of class 1.. (None where the source has none)
    categories: tuple  # the source's categories ({"id", "name"}, sorted by id); () for a text list
    annotation_path: str  # absolute
    annotation_sha256: str
    image_dir: str  # absolute
    split: str  # "train" or "eval" (create_data.py --is_training)
    split_name: str  # e.g. train2017 / val2017, "" when the source has none
    source_format: str  # coco, other, embedded, or a converter's format name
    options: dict = field(default_factory=dict)  # conversion options (empty_images and its rule, ...)
    images: tuple = ()  # RecordedImage per written image, in writing order
    created: str = ""  # ISO 8601 UTC
    version: int = RECORD_VERSION

    @property
    def image_count(self) -> int:
        return len(self.images)

    def with_images(self, images, **options) -> "DatasetRecord":
        """This record for the images actually written (and `options` decided while writing),
        stamped with the time."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        return replace(self, images=tuple(images), options={**self.options, **options}, created=now)

    def to_json(self) -> dict:
        data = asdict(self)
        data["image_count"] = self.image_count
        return data

    @classmethod
    def from_json(cls, data: dict, path: str) -> "DatasetRecord":
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise DatasetRecordError(f"{path}: not a dataset record (no 'version'); {REMAKE}")
        if data["version"] > RECORD_VERSION:
            raise DatasetRecordError(
                f"{path}: dataset record version {data['version']}, this version reads up to "
                f"{RECORD_VERSION}; update the code or re-create the MindRecord"
            )
        try:
            images = tuple(RecordedImage(**image) for image in data.get("images", ()))
            names = data.get("class_names")
            ids = data.get("category_ids")
            return cls(
                num_classes=int(data["num_classes"]),
                class_names=tuple(names) if names is not None else None,
                class_rule=str(data["class_rule"]),
                category_ids=tuple(ids) if ids is not None else None,
                categories=tuple(dict(c) for c in data.get("categories", ())),
                annotation_path=str(data["annotation_path"]),
                annotation_sha256=str(data["annotation_sha256"]),
                image_dir=str(data["image_dir"]),
                split=str(data["split"]),
                split_name=str(data.get("split_name", "")),
                source_format=str(data.get("source_format", "")),
                options=dict(data.get("options", {})),
                images=images,
                created=str(data.get("created", "")),
                version=data["version"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetRecordError(f"{path}: malformed dataset record ({exc!r}); {REMAKE}") from None

    def describe(self) -> str:
        """One line for logs: the source and the classes."""
        classes = (
            ", ".join(self.class_names[1:7]) + (" ..." if self.num_classes > 7 else "")
            if self.class_names
            else "unnamed"
        )
        return (
            f"{self.image_count} {self.split} images of {self.annotation_path}, "
            f"{self.num_classes} classes ({classes}; {self.class_rule})"
        )


REMAKE = "re-create the MindRecord with create_data.py --overwrite=True"


def record_path(mindrecord_dir: str, prefix: str) -> str:
    """Where the dataset record of `prefix` in `mindrecord_dir` lives."""
    return os.path.join(mindrecord_dir, prefix + RECORD_SUFFIX)


def first_shard_name(prefix: str, num_shards: int) -> str:
    """The file name of a MindRecord's first shard (converters.shard_paths' rule)."""
    return prefix if int(num_shards) == 1 else f"{prefix}0"


def _describes(record: DatasetRecord, shard_name: str) -> bool:
    """Whether `record` is the one of the MindRecord whose first shard is named `shard_name` (a
    prefix ending in 0 of a single shard and the sharded prefix one shorter share a file name)."""
    prefix, shards = record.options.get("prefix"), record.options.get("num_shards")
    return prefix is None or shards is None or first_shard_name(prefix, shards) == shard_name


def record_path_of_shard(first_shard: str) -> str | None:
    """The path of the dataset record of the MindRecord whose first shard is `first_shard`
    (<prefix>0 of a sharded set, <prefix> of a single file); None when there is none."""
    found = _find_record(first_shard)
    return found[0] if found else None


def _find_record(first_shard: str) -> tuple | None:
    """(path, DatasetRecord) of `first_shard`'s MindRecord, or None."""
    from nasfpn.data.converters import shard_header  # converters writes records: imported late

    folder, name = os.path.split(first_shard)
    header = shard_header(first_shard) if os.path.isfile(first_shard) else None
    shards = len(header.get("shard_addresses") or ()) if header else 0
    if shards:  # the file says how many shards it belongs to, so which prefix it is the first of
        prefixes = [name[:-1]] if shards > 1 and name.endswith("0") else [name]
    else:
        prefixes = [name[:-1], name] if name.endswith("0") else [name]
    for prefix in prefixes:
        path = record_path(folder, prefix)
        record = read_record_file(path) if os.path.isfile(path) else None
        if record is not None and _describes(record, name):
            return path, record
    return None


def read_record_file(path: str) -> DatasetRecord:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise DatasetRecordError(f"{path}: unreadable dataset record ({exc}); {REMAKE}") from None
    return DatasetRecord.from_json(data, path)


def read_dataset_record(first_shard: str) -> DatasetRecord | None:
    """The record of the MindRecord `first_shard`, or None for one made by an older version."""
    found = _find_record(first_shard)
    return found[1] if found else None


def write_dataset_record(mindrecord_dir: str, prefix: str, record: DatasetRecord) -> str:
    """Write `record` atomically beside the shards of `prefix`; call only once they are complete."""
    path = record_path(mindrecord_dir, prefix)
    write_json_atomic(path, record.to_json())
    return path


def remove_dataset_record(mindrecord_dir: str, prefix: str) -> None:
    """Before shards are replaced: a record must never describe shards that are not (yet) there."""
    path = record_path(mindrecord_dir, prefix)
    if os.path.isfile(path):
        os.remove(path)


def source_fields(annotation_path: str, image_dir: str) -> dict:
    """The annotation_path / annotation_sha256 / image_dir fields of a record (absolute paths)."""
    return {
        "annotation_path": os.path.abspath(annotation_path),
        "annotation_sha256": sha256_of(annotation_path),
        "image_dir": os.path.abspath(image_dir),
    }


def coco_dataset_record(
    anno_path: str,
    image_dir: str,
    cmap,
    categories,
    *,
    is_training: bool,
    split_name: str = "",
    source_format: str = "coco",
    options: dict | None = None,
) -> DatasetRecord:
    """The record (without images: write_mindrecord adds them) of a MindRecord converted from the
    COCO-format file `anno_path` whose categories map by `cmap` (coco_format.ClassMap)."""
    return DatasetRecord(
        num_classes=cmap.num_classes,
        class_names=tuple(cmap.names),
        class_rule=cmap.rule,
        category_ids=tuple(cmap.class_to_category.get(i) for i in range(1, cmap.num_classes)),
        categories=tuple(
            {"id": c["id"], "name": c["name"]} for c in sorted(categories, key=lambda c: c["id"])
        ),
        split="train" if is_training else "eval",
        split_name=split_name,
        source_format=source_format,
        options=dict(options or {}),
        **source_fields(anno_path, image_dir),
    )


def text_dataset_record(
    anno_path: str, image_dir: str, num_classes: int, *, is_training: bool, options: dict | None = None
) -> DatasetRecord:
    """The record of a MindRecord converted from the release's text list (class indices, no names)."""
    return DatasetRecord(
        num_classes=int(num_classes),
        class_names=None,
        class_rule=BY_CLASS_INDEX,
        category_ids=None,
        categories=(),
        split="train" if is_training else "eval",
        split_name="",
        source_format="other",
        options=dict(options or {}),
        **source_fields(anno_path, image_dir),
    )


def check_classes_agree(record: DatasetRecord, source: str, num_classes: int, explicit: bool) -> None:
    """Refuse a given num_classes that is not the record's (the MindRecord's class indices were
    numbered for the record's count)."""
    if explicit and num_classes != record.num_classes:
        raise DatasetRecordError(
            f"--num_classes={num_classes} contradicts {source}, whose dataset has "
            f"{record.num_classes} classes ({record.class_rule}); leave --num_classes out to use it"
        )


# ---- consumers: the dataset a MindRecord says it is, against what a command was given -------------

SHOWN_MISMATCHES = 3


def annotation_given(explicit_keys) -> bool:
    """Whether the user named the annotation file (--anno_path, or --coco_root whose
    instances_set names it, the release's way), from the keys the user set."""
    return bool({"anno_path", "coco_root"} & set(explicit_keys))


def image_mismatches(record: DatasetRecord, coco: dict) -> list[str]:
    """How the images of a loaded COCO file differ from the images the MindRecord holds: a missing
    id, another file name, another size (where the file gives one). Empty when they agree."""
    by_id = {image["id"]: image for image in coco["images"]}
    problems = []
    for image in record.images:
        entry = by_id.get(image.id)
        if entry is None:
            problems.append(f"image id {image.id} ({image.file_name}) is not in it")
            continue
        name = os.path.normpath(str(entry["file_name"])).replace(os.sep, "/")
        if name != os.path.normpath(image.file_name).replace(os.sep, "/"):
            problems.append(
                f"image id {image.id} is {entry['file_name']!r}, the MindRecord's {image.file_name!r}"
            )
            continue
        size = (entry.get("height"), entry.get("width"))
        if None not in size and tuple(int(v) for v in size) != (image.height, image.width):
            problems.append(
                f"image id {image.id} is {size[0]}x{size[1]}, the MindRecord's {image.height}x{image.width}"
            )
    return problems


def check_annotation_matches(record: DatasetRecord, anno_path: str, coco: dict, source: str, log) -> None:
    """Refuse an annotation file whose images (ids, file names, sizes) are not the MindRecord's;
    warn, with both hashes, when its content differs from the file the MindRecord was made from
    (edited since, or another copy)."""
    problems = image_mismatches(record, coco)
    if problems:
        shown = "; ".join(problems[:SHOWN_MISMATCHES])
        more = f" (+{len(problems) - SHOWN_MISMATCHES} more)" if len(problems) > SHOWN_MISMATCHES else ""
        raise DatasetRecordError(
            f"{anno_path} does not describe the images of {source} ({len(problems)} of "
            f"{record.image_count} differ: {shown}{more}); it was made from {record.annotation_path}"
        )
    digest = sha256_of(anno_path)
    if digest != record.annotation_sha256:
        log.warning(
            "%s differs from the file %s was converted from (%s, sha256 %s; this one has sha256 %s): "
            "its boxes or classes may have changed since",
            anno_path,
            source,
            record.annotation_path,
            record.annotation_sha256[:16],
            digest[:16],
        )


def recorded_annotation_path(record: DatasetRecord, source: str) -> str:
    """The annotation file the MindRecord was made from; a one-line error when it moved."""
    if not os.path.isfile(record.annotation_path):
        raise DatasetRecordError(
            f"{record.annotation_path}, the annotation file {source} was made from, is not there "
            "(moved or deleted?): give its new place with --anno_path"
        )
    return record.annotation_path


def no_record_message(source: str, needs: str) -> str:
    return (
        f"{source} has no dataset record ({os.path.basename(source)}'s <prefix>{RECORD_SUFFIX}; made by "
        f"an older create_data.py): give {needs}, or re-create it with create_data.py"
    )


def eval_annotation(data, given: bool, mindrecord: str, log) -> tuple[str, DatasetRecord | None]:
    """(the ground-truth annotation file for evaluating `mindrecord`, its dataset record or None),
    from the data section; `given`: the user named the file (annotation_given).

    With a record: the file it names, unless --anno_path / --coco_root name another (an override,
    checked: check_annotation_matches). Without one (an older MindRecord): the options' file, and
    a one-line error when none was given and the default coco_root's file is not there."""
    from nasfpn.data.coco_format import load_coco_json
    from nasfpn.data.layout import annotation_path

    record = read_dataset_record(mindrecord)
    if record is None:  # the options' file, as before; the release's default coco_root included
        path = annotation_path(data, data.val_data_type)
        if not given and not os.path.isfile(path):
            raise DatasetRecordError(no_record_message(mindrecord, "--anno_path (or --coco_root)"))
        return path, None
    if not given:
        path = recorded_annotation_path(record, mindrecord)
    else:
        path = annotation_path(data, data.val_data_type)
    check_annotation_matches(record, path, load_coco_json(path), mindrecord, log)
    return path, record


def apply_record_classes(cfg, record: DatasetRecord | None, source: str):
    """cfg with num_classes from the record when not given; a given one that contradicts it is
    refused (DatasetRecordError naming both)."""
    if record is None:
        return cfg
    check_classes_agree(record, source, cfg.num_classes, "num_classes" in cfg.explicit_keys)
    if cfg.num_classes == record.num_classes:
        return cfg
    return cfg.replace(num_classes=record.num_classes, explicit=False)
