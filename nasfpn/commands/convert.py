"""Convert a dataset to MindRecord shards (docs/conventions.md#mindrecord-files-and-annotation-paths).

python create_data.py --create_dataset=coco --coco_root=DIR --mindrecord_dir=OUT [--is_training=False]
python create_data.py --create_dataset=coco --anno_path=JSON --train_image_dir=IMAGES --mindrecord_dir=OUT
python create_data.py --create_dataset=other --image_dir=IMAGES --anno_path=LIST.txt --mindrecord_dir=OUT
python create_data.py --create_dataset=embedded --coco_root=DIR ...   (generates the shapes set first)
"""

import os
from typing import Optional, Sequence

from nasfpn.config.flat import Config, ConfigError, load_config
from nasfpn.core.errors import UserFileNotFoundError


def convert(cfg: Config) -> str:
    from nasfpn.data.coco_format import check_num_classes, class_map, load_coco_json
    from nasfpn.data.converters import coco_samples, text_samples, write_mindrecord, Summary
    from nasfpn.data.layout import annotation_path, image_folder, split_name, split_prefix
    from nasfpn.core.storage import check_output_dir

    prefix = cfg.prefix or split_prefix(cfg.is_training)
    summary = Summary()
    check_output_dir(
        cfg.mindrecord_dir, what="MindRecord folder", option="mindrecord_dir", create=False
    )  # before any image is read
    if cfg.create_dataset == "embedded" and not os.path.isdir(cfg.coco_root):
        from nasfpn.data.embedded import generate_embedded_dataset

        generate_embedded_dataset(cfg.coco_root, seed=cfg.seed)
        print(f"generated the embedded dataset in {cfg.coco_root}")
    image_dir, named_by = image_folder(cfg, cfg.is_training)
    if not os.path.isdir(image_dir):
        raise UserFileNotFoundError(f"image folder not found: {image_dir} ({named_by})")
    if cfg.create_dataset in ("coco", "embedded"):
        anno_path = annotation_path(cfg, split_name(cfg, cfg.is_training))
        check_num_classes(class_map(load_coco_json(anno_path), cfg.coco_classes), cfg.num_classes, anno_path)
        samples = coco_samples(
            anno_path, image_dir, cfg.is_training, summary, cfg.coco_classes, cfg.empty_images
        )
    else:
        samples = text_samples(cfg.anno_path, image_dir, cfg.num_classes, summary, cfg.empty_images)
    print(f"images from {image_dir} ({named_by})")
    first, summary = write_mindrecord(
        samples, cfg.mindrecord_dir, prefix, cfg.num_shards, cfg.overwrite, summary
    )
    print(f"wrote {first} (+ shards)\n{summary}")
    return str(first)


def main(argv: Optional[Sequence[str]] = None) -> str:
    return run(load_config(argv))


def run(cfg: Config) -> str:
    if cfg.create_dataset not in ("coco", "other", "embedded"):
        raise ConfigError(f"--create_dataset: expected coco, other or embedded, got {cfg.create_dataset!r}")
    return convert(cfg)
