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
