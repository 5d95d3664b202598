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


def annotation_path(data, split):
    """The data section's anno_path when given, else coco_root/instances_set filled with the
    split (e.g. val2017)."""
    return data.anno_path or os.path.join(data.coco_root, data.instances_set.format(split))


def split_name(data, is_training):
    """The split create_data.py converts: train_data_type or val_data_type."""
    return data.train_data_type if is_training else data.val_data_type


def image_folder(data, is_training):
    """(folder of a split's images, what named it) from the data section: train_image_dir /
    val_image_dir, else
    image_dir, else coco_root/<split> (the release's layout)."""
    own_key = "train_image_dir" if is_training else "val_image_dir"
    for key in (own_key, "image_dir"):
        if getattr(data, key):
            return getattr(data, key), f"--{key}"
    split_key = "train_data_type" if is_training else "val_data_type"
    return (
        os.path.join(data.coco_root, split_name(data, is_training)),
        f"coco_root/<{split_key}>, as no --{own_key} or --image_dir is given",
    )
