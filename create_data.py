"""Convert a dataset to MindRecord shards (docs/conventions.md#mindrecord-files-and-annotation-paths).

    python create_data.py --create_dataset=coco --coco_root=DIR --mindrecord_dir=OUT [--is_training=False]
    python create_data.py --create_dataset=other --image_dir=IMAGES --anno_path=LIST.txt --mindrecord_dir=OUT
    python create_data.py --create_dataset=embedded --coco_root=DIR ...   (generates the shapes set first)
"""
import os

from src.config import ConfigError, load_config
from src.modelarts import modelarts_entry
from src.cli import run_entry_point
from src.errors import UserFileNotFoundError


def convert(cfg):
    from src.data.coco_format import check_num_classes, class_map, load_coco_json
    from src.data.converters import coco_samples, text_samples, write_mindrecord, Summary
    from src.data.layout import annotation_path, split_prefix
    prefix = cfg.prefix or split_prefix(cfg.is_training)
    summary = Summary()
    if cfg.create_dataset == "embedded" and not os.path.isdir(cfg.coco_root):
        from src.data.embedded import generate_embedded_dataset
        generate_embedded_dataset(cfg.coco_root, seed=cfg.seed)
        print(f"generated the embedded dataset in {cfg.coco_root}")
    if cfg.create_dataset in ("coco", "embedded"):
        split = cfg.train_data_type if cfg.is_training else cfg.val_data_type
        anno_path = annotation_path(cfg, split)
        image_dir = cfg.image_dir or os.path.join(cfg.coco_root, split)
        if not os.path.isdir(image_dir):
            raise UserFileNotFoundError(f"image directory not found: {image_dir}")
        check_num_classes(class_map(load_coco_json(anno_path), cfg.coco_classes), cfg.num_classes,
                          anno_path)
        samples = coco_samples(anno_path, image_dir, cfg.is_training, summary, cfg.coco_classes)
    else:
        if not os.path.isdir(cfg.image_dir):
            raise UserFileNotFoundError(f"--image_dir not found: {cfg.image_dir!r}")
        samples = text_samples(cfg.anno_path, cfg.image_dir, cfg.num_classes, summary)
    first, summary = write_mindrecord(samples, cfg.mindrecord_dir, prefix, cfg.num_shards,
                                      cfg.overwrite, summary)
    print(f"wrote {first} (+ shards)\n{summary}")
    return first


def main(argv=None):
    return run(load_config(argv))


def run(cfg):
    if cfg.create_dataset not in ("coco", "other", "embedded"):
        raise ConfigError(f"--create_dataset: expected coco, other or embedded, got {cfg.create_dataset!r}")
    return convert(cfg)


if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
