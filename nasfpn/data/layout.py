"""Where data lives: MindRecord prefixes and the annotation file of a COCO split.

One place for the names that create_data.py writes and train.py / eval.py read
(docs/conventions.md#mindrecord-files-and-annotation-paths).
"""

import os

TRAIN_PREFIX = "retinanet.mindrecord"
EVAL_PREFIX = "retinanet_eval.mindrecord"


def split_prefix(is_training):
    """The release's MindRecord prefix for the training or the evaluation split."""
    return TRAIN_PREFIX if is_training else EVAL_PREFIX


def annotation_path(cfg, split):
    """--anno_path when given, else coco_root/instances_set filled with the split (e.g. val2017)."""
    return cfg.anno_path or os.path.join(cfg.coco_root, cfg.instances_set.format(split))


def split_name(cfg, is_training):
    """The split create_data.py converts: train_data_type or val_data_type."""
    return cfg.train_data_type if is_training else cfg.val_data_type


def image_folder(cfg, is_training):
    """(folder of a split's images, what named it): train_image_dir / val_image_dir, else
    image_dir, else coco_root/<split> (the release's layout)."""
    own_key = "train_image_dir" if is_training else "val_image_dir"
    for key in (own_key, "image_dir"):
        if getattr(cfg, key):
            return getattr(cfg, key), f"--{key}"
    split_key = "train_data_type" if is_training else "val_data_type"
    return (
        os.path.join(cfg.coco_root, split_name(cfg, is_training)),
        f"coco_root/<{split_key}>, as no --{own_key} or --image_dir is given",
    )
