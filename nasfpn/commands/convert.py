"""Convert a dataset to MindRecord shards (docs/conventions.md#mindrecord-files-and-annotation-paths).

python create_data.py --create_dataset=coco --coco_root=DIR --mindrecord_dir=OUT [--is_training=False]
python create_data.py --create_dataset=coco --anno_path=JSON --train_image_dir=IMAGES --mindrecord_dir=OUT
python create_data.py --create_dataset=other --image_dir=IMAGES --anno_path=LIST.txt --mindrecord_dir=OUT
python create_data.py --create_dataset=embedded --coco_root=DIR ...   (generates the shapes set first)
"""

import os
from typing import Optional, Sequence

from nasfpn.config.flat import Config, ConfigError, load_config
from nasfpn.config.sections import DataConfig, ModelConfig
from nasfpn.core.errors import UserFileNotFoundError


def convert(data: DataConfig, model: ModelConfig, overwrite: bool) -> str:
    """Convert the data section's dataset (classes of the model section) to MindRecord shards;
    returns the first shard's path. `overwrite`: replace the shards of an earlier run."""
    from nasfpn.data.coco_format import check_num_classes, class_map, load_coco_json
    from nasfpn.data.converters import coco_samples, text_samples, write_mindrecord, Summary
    from nasfpn.data.layout import annotation_path, image_folder, split_name, split_prefix
    from nasfpn.core.storage import check_output_dir

    prefix = data.prefix or split_prefix(data.is_training)
    summary = Summary()
    check_output_dir(
        data.mindrecord_dir, what="MindRecord folder", option="mindrecord_dir", create=False
    )  # before any image is read
    if data.create_dataset == "embedded" and not os.path.isdir(data.coco_root):
        from nasfpn.data.embedded import generate_embedded_dataset

        generate_embedded_dataset(data.coco_root, seed=data.seed)
        print(f"generated the embedded dataset in {data.coco_root}")
    image_dir, named_by = image_folder(data, data.is_training)
    if not os.path.isdir(image_dir):
        raise UserFileNotFoundError(f"image folder not found: {image_dir} ({named_by})")
    if data.create_dataset in ("coco", "embedded"):
        anno_path = annotation_path(data, split_name(data, data.is_training))
        check_num_classes(
            class_map(load_coco_json(anno_path), model.coco_classes), model.num_classes, anno_path
        )
        samples = coco_samples(
            anno_path, image_dir, data.is_training, summary, model.coco_classes, data.empty_images
        )
    else:
        samples = text_samples(data.anno_path, image_dir, model.num_classes, summary, data.empty_images)
    print(f"images from {image_dir} ({named_by})")
    first, summary = write_mindrecord(
        samples, data.mindrecord_dir, prefix, data.num_shards, overwrite, summary
    )
    print(f"wrote {first} (+ shards)\n{summary}")
    return str(first)


def main(argv: Optional[Sequence[str]] = None) -> str:
    return run(load_config(argv))


def run(cfg: Config) -> str:
    if cfg.create_dataset not in ("coco", "other", "embedded"):
        raise ConfigError(f"--create_dataset: expected coco, other or embedded, got {cfg.create_dataset!r}")
    return convert(cfg.data, cfg.model, cfg.job.overwrite)
