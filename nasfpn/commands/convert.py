"""Convert a dataset to MindRecord shards (docs/conventions.md#mindrecord-files-and-annotation-paths).

python create_data.py --create_dataset=coco --coco_root=DIR --mindrecord_dir=OUT [--is_training=False]
python create_data.py --create_dataset=coco --anno_path=JSON --train_image_dir=IMAGES --mindrecord_dir=OUT
python create_data.py --create_dataset=other --image_dir=IMAGES --anno_path=LIST.txt --mindrecord_dir=OUT
python create_data.py --create_dataset=embedded --coco_root=DIR ...   (generates the shapes set first)
python create_data.py --create_dataset=voc --dataset_root=VOCdevkit/VOC2012 --mindrecord_dir=OUT
python create_data.py --create_dataset=yolo --dataset_root=DIR --mindrecord_dir=OUT   (data.yaml or classes.txt)
python create_data.py --create_dataset=coco --anno_path=export.json --image_dir=DIR --val_fraction=0.2 ...

voc and yolo, and a split export (--val_fraction), write the split's ground truth as COCO JSON into
MINDRECORD_DIR/annotations/instances_<split>.json: --coco_root=MINDRECORD_DIR then gives train.py
and eval.py the class names and the ground truth.
"""

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from nasfpn.config.flat import Config, ConfigError, load_config
from nasfpn.config.sections import DataConfig, ModelConfig
from nasfpn.core.errors import UserFileNotFoundError
from nasfpn.data.layout import annotation_path, image_folder, split_name, split_prefix

if TYPE_CHECKING:  # the converters import MindSpore: only when a conversion runs
    from nasfpn.data.converters import Summary
    from nasfpn.data.dataset_record import DatasetRecord

LABEL_FOLDER_FORMATS = ("voc", "yolo")


@dataclass(frozen=True)
class Conversion:
    """What a conversion reads: the data section, the classes of the model section, whether it
    replaces an earlier run's outputs, and the keys the user set (`given`: a given --num_classes
    is checked against the data, a given --train_data_type / --val_data_type names the split)."""

    data: DataConfig
    model: ModelConfig
    overwrite: bool
    given: frozenset = frozenset()


def source_split(job: Conversion) -> str:
    """The split of a VOC / YOLO folder: train or val, unless --train_data_type / --val_data_type
    name it (e.g. trainval / test of VOC2007)."""
    key = "train_data_type" if job.data.is_training else "val_data_type"
    if key in job.given:
        return str(getattr(job.data, key))
    return "train" if job.data.is_training else "val"


def label_folder_coco(job: Conversion, summary: "Summary") -> tuple:
    """(COCO dict, image folder, source paths, classes rule) of the converted split of a VOC /
    YOLO folder (--dataset_root), split by --val_fraction when given."""
    from nasfpn.data.label_formats import split_coco, voc_to_coco, yolo_to_coco

    root = job.data.dataset_root
    if not root:
        raise ConfigError(
            f"--create_dataset={job.data.create_dataset} needs --dataset_root (the folder of the set)"
        )
    if not os.path.isdir(root):
        raise UserFileNotFoundError(f"--dataset_root={root}: folder not found")
    split = source_split(job)
    if job.data.create_dataset == "voc":
        coco, image_dir, sources, rule = voc_to_coco(
            root, split, summary, whole_folder=bool(job.data.val_fraction)
        )
    else:
        coco, image_dir, sources, rule = yolo_to_coco(
            root, "train" if job.data.val_fraction else split, summary
        )
    if job.data.val_fraction:
        coco = split_coco(coco, job.data.val_fraction, job.data.seed, job.data.is_training, root)
    return coco, image_dir, sources, rule


def ground_truth_path(job: Conversion) -> str:
    """Where a converted split's COCO JSON goes: the layout --coco_root=<mindrecord_dir> reads."""
    return str(
        os.path.join(
            job.data.mindrecord_dir, job.data.instances_set.format(split_name(job.data, job.data.is_training))
        )
    )


def written_coco(job: Conversion, summary: "Summary") -> tuple | None:
    """(COCO dict, image folder, named by, source paths) for the conversions that write their
    ground truth (voc, yolo, a coco export split by --val_fraction), else None."""
    from nasfpn.data.coco_format import load_coco_json
    from nasfpn.data.label_formats import split_coco

    if job.data.create_dataset in LABEL_FOLDER_FORMATS:
        coco, image_dir, sources, rule = label_folder_coco(job, summary)
        print(rule)
        return coco, image_dir, f"--dataset_root, {job.data.create_dataset} layout", sources
    if job.data.create_dataset == "coco" and job.data.val_fraction:
        anno_path = annotation_path(job.data, split_name(job.data, True))
        coco = split_coco(
            load_coco_json(anno_path), job.data.val_fraction, job.data.seed, job.data.is_training, anno_path
        )
        image_dir, named_by = image_folder(job.data, True)
        return coco, image_dir, named_by, [anno_path, image_dir]
    return None


def convert(job: Conversion) -> str:
    from nasfpn.data.converters import Summary, coco_samples, text_samples, write_mindrecord
    from nasfpn.data.dataset_record import text_dataset_record
    from nasfpn.data.label_formats import check_val_fraction
    from nasfpn.core.storage import check_output_dir

    prefix = job.data.prefix or split_prefix(job.data.is_training)
    summary = Summary()
    check_output_dir(
        job.data.mindrecord_dir, what="MindRecord folder", option="mindrecord_dir", create=False
    )  # before any image is read
    if job.data.create_dataset == "embedded" and not os.path.isdir(job.data.coco_root):
        from nasfpn.data.embedded import generate_embedded_dataset

        generate_embedded_dataset(job.data.coco_root, seed=job.data.seed)
        print(f"generated the embedded dataset in {job.data.coco_root}")
    check_val_fraction(job.data.val_fraction)
    if job.data.val_fraction and job.data.create_dataset not in ("coco", *LABEL_FOLDER_FORMATS):
        raise ConfigError(
            f"--val_fraction splits coco, voc or yolo sets, not --create_dataset={job.data.create_dataset}"
        )
    written = written_coco(job, summary)
    if written:
        return convert_written(job, summary, prefix, *written)
    image_dir, named_by = image_folder(job.data, job.data.is_training)
    if not os.path.isdir(image_dir):
        raise UserFileNotFoundError(f"image folder not found: {image_dir} ({named_by})")
    options = {"empty_images": job.data.empty_images, "is_training": bool(job.data.is_training)}
    if job.data.create_dataset in ("coco", "embedded"):
        anno_path, record = coco_record(job, image_dir, options)
        samples = coco_samples(
            anno_path,
            image_dir,
            job.data.is_training,
            summary,
            job.model.coco_classes,
            job.data.empty_images,
            job.data.allow_outside_image_dir,
        )
    else:
        record = text_dataset_record(
            job.data.anno_path,
            image_dir,
            job.model.num_classes,
            is_training=job.data.is_training,
            options=options,
        )
        samples = text_samples(
            job.data.anno_path,
            image_dir,
            job.model.num_classes,
            summary,
            job.data.empty_images,
            job.data.allow_outside_image_dir,
        )
    print(f"images from {image_dir} ({named_by})")
    first, summary = write_mindrecord(
        samples, job.data.mindrecord_dir, prefix, job.data.num_shards, job.overwrite, summary, record=record
    )
    print(f"wrote {first} (+ shards and {prefix}.dataset.json: classes and source)\n{summary}")
    return str(first)


def convert_written(
    job: Conversion, summary: "Summary", prefix: str, coco: dict, image_dir: str, named_by: str, sources: list
) -> str:
    """Write `coco` as the split's ground truth beside the MindRecord (atomic, with the shards:
    neither appears unless both are complete) and convert the split from it."""
    import json

    from nasfpn.core.atomic import atomic_path
    from nasfpn.data.converters import ConversionError, coco_samples, write_mindrecord

    if not os.path.isdir(image_dir):
        raise UserFileNotFoundError(f"image folder not found: {image_dir} ({named_by})")
    gt_path = ground_truth_path(job)
    if os.path.exists(gt_path) and not job.overwrite:
        raise ConversionError(f"{gt_path} already exists; pass --overwrite=True to replace it and the shards")
    with atomic_path(gt_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(coco, f)
        record = written_record(job, tmp, gt_path, coco, image_dir, prefix, sources)
        samples = coco_samples(
            tmp,
            image_dir,
            job.data.is_training,
            summary,
            job.model.coco_classes,
            job.data.empty_images,
            job.data.allow_outside_image_dir,
        )
        print(f"images from {image_dir} ({named_by}); sources: {', '.join(sources)}")
        first, summary = write_mindrecord(
            samples,
            job.data.mindrecord_dir,
            prefix,
            job.data.num_shards,
            job.overwrite,
            summary,
            record=record,
        )
    num_classes = 1 + len(coco["categories"])
    print(
        f"wrote {first} (+ shards and {prefix}.dataset.json: classes and source) and the ground "
        f"truth {gt_path}\n{summary}\n"
        f"train / evaluate with --coco_root={job.data.mindrecord_dir} (class names and ground truth) "
        f"--mindrecord_dir={job.data.mindrecord_dir}"
        + (
            ""
            if summary.class_rule and "by COCO name" in summary.class_rule
            else f" --num_classes={num_classes}"
        )
    )
    return str(first)


def written_record(
    job: Conversion, tmp_path: str, gt_path: str, coco: dict, image_dir: str, prefix: str, sources: list
) -> "DatasetRecord":
    """The dataset record of a conversion from a written ground truth (`tmp_path`, renamed to
    `gt_path` with the shards): its classes, and the source files it was read from. A given
    --num_classes that contradicts the classes is refused."""
    import dataclasses

    from nasfpn.data.coco_format import check_num_classes, class_map
    from nasfpn.data.dataset_record import coco_dataset_record

    cmap = class_map(coco, job.model.coco_classes)
    if "num_classes" in job.given:
        check_num_classes(cmap, job.model.num_classes, sources[0])
    options = {
        "empty_images": job.data.empty_images,
        "is_training": bool(job.data.is_training),
        "prefix": prefix,
        "sources": [os.path.abspath(p) for p in sources],
        "val_fraction": job.data.val_fraction,
        "seed": job.data.seed,
    }
    split = split_name(job.data, job.data.is_training)
    record = coco_dataset_record(
        tmp_path,
        image_dir,
        cmap,
        coco["categories"],
        is_training=job.data.is_training,
        split_name=split,
        source_format=job.data.create_dataset,
        options=options,
    )
    return dataclasses.replace(record, annotation_path=os.path.abspath(gt_path))


def coco_record(job: Conversion, image_dir: str, options: dict) -> tuple:
    """(annotation file, its dataset record) of a COCO-format conversion. --num_classes is the
    file's class count when not given; a given one that contradicts it is refused."""
    from nasfpn.data.coco_format import check_num_classes, class_map, load_coco_json
    from nasfpn.data.dataset_record import coco_dataset_record
    from nasfpn.data.layout import annotation_path, split_name

    split = split_name(job.data, job.data.is_training)
    anno_path = annotation_path(job.data, split)
    coco = load_coco_json(anno_path)
    cmap = class_map(coco, job.model.coco_classes)
    if "num_classes" in job.given:
        check_num_classes(cmap, job.model.num_classes, anno_path)
    else:
        print(f"num_classes: {cmap.num_classes} from {anno_path} (background + categories)")
    record = coco_dataset_record(
        anno_path,
        image_dir,
        cmap,
        coco["categories"],
        is_training=job.data.is_training,
        split_name=split if not job.data.anno_path else "",
        source_format=job.data.create_dataset,
        options=options,
    )
    return anno_path, record


def main(argv: Optional[Sequence[str]] = None) -> str:
    return run(load_config(argv))


def run(cfg: Config) -> str:
    return convert(Conversion(cfg.data, cfg.model, cfg.job.overwrite, frozenset(cfg.explicit_keys)))
