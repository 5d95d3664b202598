"""MindDataset pipelines for training and evaluation (docs/conventions.md#data-transforms).

Training columns, in RetinaNetWithLoss's argument order:
  image float32 [B, 3, H, W], gt_loc float32 [B, A, 4], gt_label int32 [B, A], num_match int32 [B, 1]
Evaluation columns: img_id int32 [B, 1], image float32 [B, 3, H, W], image_shape int32 [B, 2] (h, w).
"""
import collections
import os
import threading

import numpy as np

from ..boxes import AnchorMatcher, Anchors, AnchorSpec
from .transforms import decode_image, preprocess_image, train_transform

TRAIN_COLUMNS = ["image", "gt_loc", "gt_label", "num_match"]
EVAL_COLUMNS = ["img_id", "image", "image_shape"]


def _workers(cfg, num_parallel_workers):
    count = num_parallel_workers or cfg.num_parallel_workers
    return max(1, min(int(count), os.cpu_count() or 1))


class TrainSampleTransform:
    """Decode + augment + match one record. Randomness comes from (seed, img_id, visit count), so
    results do not depend on which worker thread takes the record."""

    def __init__(self, cfg, seed):
        self.img_shape = tuple(cfg.img_shape)
        self.matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)), cfg.match_threshold,
                                     cfg.prior_scaling)
        self.seed = int(seed)
        self.random_crop = bool(cfg.train_random_crop)
        self.visits = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, img_id, image, annotation):
        key = int(np.asarray(img_id).reshape(-1)[0])
        with self.lock:
            visit = self.visits[key]
            self.visits[key] += 1
        rng = np.random.default_rng([self.seed, key, visit])
        rows = np.asarray(annotation, np.int32).reshape(-1, 5)
        return train_transform(decode_image(image.tobytes()), rows[:, :4].astype(np.float32),
                               rows[:, 4], self.img_shape, rng, self.matcher, self.random_crop)


class EvalSampleTransform:
    def __init__(self, cfg):
        self.img_shape = tuple(cfg.img_shape)

    def __call__(self, image):
        rgb = decode_image(image.tobytes())
        return preprocess_image(rgb, self.img_shape), np.array(rgb.shape[:2], np.int32)


def create_train_dataset(mindrecord_file, cfg, batch_size, device_num=1, rank_id=0,
                         num_parallel_workers=None, shuffle=True, seed=None):
    """Training batches (drop remainder), sharded by rank for data-parallel training."""
    import mindspore.dataset as ds
    seed = cfg.seed if seed is None else seed
    ds.config.set_seed(int(seed))
    workers = _workers(cfg, num_parallel_workers)
    data = ds.MindDataset(mindrecord_file, columns_list=["img_id", "image", "annotation"],
                          num_shards=device_num if device_num > 1 else None,
                          shard_id=rank_id if device_num > 1 else None,
                          shuffle=shuffle, num_parallel_workers=min(workers, 2))
    data = data.map(operations=TrainSampleTransform(cfg, seed),
                    input_columns=["img_id", "image", "annotation"], output_columns=TRAIN_COLUMNS,
                    num_parallel_workers=workers, python_multiprocessing=False)
    data = data.project(TRAIN_COLUMNS)
    return data.batch(batch_size, drop_remainder=True)


def create_eval_dataset(mindrecord_file, cfg, batch_size=1, num_parallel_workers=None,
                        device_num=1, rank_id=0):
    """Evaluation batches in file order (no shuffle, keeps the remainder)."""
    import mindspore.dataset as ds
    workers = _workers(cfg, num_parallel_workers)
    columns = ["img_id", "image"]
    if device_num > 1:
        # MindDataset evens out shards by repeating records; pad with a marked record instead
        # and drop it, so the shards partition the images exactly (no image evaluated twice).
        total = ds.MindDataset(mindrecord_file, columns_list=["img_id"], shuffle=False).get_dataset_size()
        padding = (-total) % device_num
        pad = dict(padded_sample={"img_id": np.array([-1], np.int32), "image": b""},
                   num_padded=padding) if padding else {}
        data = ds.MindDataset(mindrecord_file, columns_list=columns, num_shards=device_num,
                              shard_id=rank_id, shuffle=False, **pad)
        data = data.filter(predicate=lambda img_id: bool(img_id[0] >= 0), input_columns=["img_id"])
    else:
        data = ds.MindDataset(mindrecord_file, columns_list=columns, shuffle=False)
    data = data.map(operations=EvalSampleTransform(cfg), input_columns=["image"],
                    output_columns=["image", "image_shape"], num_parallel_workers=workers,
                    python_multiprocessing=False)
    data = data.project(EVAL_COLUMNS)
    return data.batch(batch_size, drop_remainder=False)
