"""MindDataset pipelines for training and evaluation (docs/conventions.md#data-transforms).

Training columns, in RetinaNetWithLoss's argument order:
  image float32 [B, 3, H, W], gt_loc float32 [B, A, 4], gt_label int32 [B, A], num_match int32 [B, 1]
Evaluation columns: img_id int32 [B, 1], image float32 [B, 3, H, W], image_shape int32 [B, 2] (h, w).
"""

import contextlib
import os

import numpy as np

from nasfpn.ops.boxes import AnchorMatcher, Anchors
from nasfpn.core.errors import UserError
from nasfpn.data.converters import (
    REMAKE,
    BrokenMindRecordError,
    check_mindrecord,
    mindspore_error_reason,
    object_rows,
)
from nasfpn.data.transforms import ScaleJitter, decode_image, preprocess_image, train_transform

TRAIN_COLUMNS = ["image", "gt_loc", "gt_label", "num_match"]
EVAL_COLUMNS = ["img_id", "image", "image_shape"]

# Second word of every random key, so the shuffle and augmentation streams never share a key
# (numpy's SeedSequence treats [a, b] and [a, b, 0] alike, so key length alone does not separate them).
ORDER_STREAM = 1
AUGMENT_STREAM = 2


def _workers(count):
    return max(1, min(int(count), os.cpu_count() or 1))


def augmentation_rng(seed, img_id, epoch):
    """The random generator for one image's augmentation in one epoch."""
    return np.random.default_rng([int(seed), AUGMENT_STREAM, int(img_id), int(epoch)])


class TrainSampleTransform:
    """Decode + augment + match one record. The random stream is keyed by (seed, img_id, epoch),
    so a sample's augmentation does not depend on worker threads, on the order records arrive in,
    or on how many epochs this process has run before (a resumed run draws the same numbers)."""

    def __init__(self, img_shape, augmentation, matcher, seed, epoch):
        self.img_shape = tuple(img_shape)
        self.matcher = matcher
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.random_crop = bool(augmentation.train_random_crop)
        self.scale_jitter = ScaleJitter.from_section(augmentation)

    def __call__(self, img_id, image, annotation):
        key = int(np.asarray(img_id).reshape(-1)[0])
        rng = augmentation_rng(self.seed, key, self.epoch)
        rows = object_rows(annotation)  # none for an image without objects: all background
        return train_transform(
            decode_image(image.tobytes()),
            rows[:, :4].astype(np.float32),
            rows[:, 4],
            self.img_shape,
            rng,
            self.matcher,
            self.random_crop,
            self.scale_jitter,
        )


class EvalSampleTransform:
    def __init__(self, img_shape):
        self.img_shape = tuple(img_shape)

    def __call__(self, image):
        rgb = decode_image(image.tobytes())
        return preprocess_image(rgb, self.img_shape), np.array(rgb.shape[:2], np.int32)


def epoch_order(num_records, seed, epoch, shuffle=True):
    """Record positions in the order epoch `epoch` visits them: a pure function of (seed, epoch)."""
    if not shuffle:
        return np.arange(num_records)
    return np.random.default_rng([int(seed), ORDER_STREAM, int(epoch)]).permutation(num_records)


def shard_positions(order, device_num, rank_id):
    """Rank `rank_id`'s part of one epoch's order. Every rank gets ceil(N / device_num) records, as
    with MindDataset's own sharding: the order is extended cyclically from its start to a multiple
    of device_num, then dealt out round-robin, so the shards cover the epoch and overlap only in
    those few wrapped-around records."""
    per_shard = -(-len(order) // device_num)
    return np.resize(order, per_shard * device_num)[rank_id::device_num]


class TrainDataStream:
    """Training batches, epoch after epoch, where epoch e is the same wherever a run starts.

    Each epoch is its own MindDataset pipeline: a SubsetSampler over this rank's shard of
    epoch_order(seed, e), then TrainSampleTransform keyed by (seed, img_id, e), then batching with
    drop_remainder. So a stream made with start_epoch=k yields exactly epochs k, k+1, ... of a
    stream made with start_epoch=0 (MindDataset's own shuffle restarts at its first order in every
    new pipeline, which made resumed runs see other data).

    It answers what the training loop asks of a MindSpore dataset: get_dataset_size() (batches per
    epoch), create_tuple_iterator / create_dict_iterator (one `for` loop = one epoch, like
    MindSpore's), get_batch_size(), get_col_names(); epoch_dataset(e) is the MindSpore pipeline of
    one epoch for anything that needs the real object.
    """

    def __init__(
        self,
        mindrecord_file,
        img_shape,
        augmentation,
        matcher,
        batch_size,
        device_num,
        rank_id,
        workers,
        shuffle,
        seed,
    ):
        self.mindrecord_file = mindrecord_file
        self.img_shape = tuple(img_shape)
        self.augmentation = augmentation
        self.matcher = matcher  # built once: the anchors and their lookup tables serve every epoch
        self.batch_size = int(batch_size)
        self.device_num = int(device_num)
        self.rank_id = int(rank_id)
        self.workers = int(workers)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.start_epoch = 0  # start_at sets it
        self.num_records = check_mindrecord(mindrecord_file)

    def positions(self, epoch):
        """Record positions this rank reads in `epoch`, in order (before batching)."""
        order = epoch_order(self.num_records, self.seed, epoch, self.shuffle)
        return shard_positions(order, self.device_num, self.rank_id)

    def start_at(self, epoch):
        """Iterators start at `epoch` from now on: a resumed run calls it once it knows its
        epoch, which needs the batches per epoch this stream gives."""
        if int(epoch) < 0:
            raise UserError(f"start_epoch: expected an epoch number >= 0, got {epoch}")
        self.start_epoch = int(epoch)

    def get_dataset_size(self):
        """Batches per epoch (the remainder is dropped); the same for every epoch."""
        return -(-self.num_records // self.device_num) // self.batch_size

    def get_batch_size(self):
        return self.batch_size

    def get_col_names(self):
        return list(TRAIN_COLUMNS)

    def epoch_dataset(self, epoch):
        """The MindSpore pipeline that yields epoch `epoch`'s batches once."""
        import mindspore.dataset as ds

        sampler = ds.SubsetSampler(self.positions(epoch).tolist())
        data = ds.MindDataset(
            self.mindrecord_file,
            columns_list=["img_id", "image", "annotation"],
            sampler=sampler,
            num_parallel_workers=min(self.workers, 2),
        )
        data = data.map(
            operations=TrainSampleTransform(
                self.img_shape, self.augmentation, self.matcher, self.seed, epoch
            ),
            input_columns=["img_id", "image", "annotation"],
            output_columns=TRAIN_COLUMNS,
            num_parallel_workers=self.workers,
            python_multiprocessing=False,
        )
        data = data.project(TRAIN_COLUMNS)
        return data.batch(self.batch_size, drop_remainder=True)

    def create_tuple_iterator(self, columns=None, num_epochs=-1, output_numpy=False, do_copy=False):
        def open_epoch(epoch):
            return self.epoch_dataset(epoch).create_tuple_iterator(
                columns=columns, num_epochs=1, output_numpy=output_numpy, do_copy=do_copy
            )

        return EpochIterator(open_epoch, self.start_epoch, num_epochs, self.read_failed)

    def read_failed(self, epoch, exc):
        """The error for a MindSpore read that failed mid-run (a shard deleted, truncated or
        overwritten meanwhile): the shard check names the broken file where it can."""
        reason = mindspore_error_reason(exc)
        during = f"training stopped reading epoch {epoch + 1} (the checkpoints written so far are kept)"
        try:
            check_mindrecord(self.mindrecord_file)
        except BrokenMindRecordError as broken:
            return BrokenMindRecordError(f"{during}: {broken}")
        return BrokenMindRecordError(
            f"{during}: {self.mindrecord_file}: MindSpore could not read it ({reason}); {REMAKE}"
        )

    def create_dict_iterator(self, num_epochs=-1, output_numpy=False, do_copy=False):
        def open_epoch(epoch):
            return self.epoch_dataset(epoch).create_dict_iterator(
                num_epochs=1, output_numpy=output_numpy, do_copy=do_copy
            )

        return EpochIterator(open_epoch, self.start_epoch, num_epochs, self.read_failed)

    def __iter__(self):
        return iter(self.create_tuple_iterator(num_epochs=1))


class EpochIterator:
    """Iterates epochs first_epoch, first_epoch + 1, ... (num_epochs of them; -1: no end), one
    MindSpore pipeline each: each `for` loop over it runs one epoch, as with MindSpore's own
    iterators. Starting a pipeline costs one batch's latency per epoch (about 20 ms for a batch of
    4 small images on 2 cores): MindSpore launches it at the first request, so it cannot be
    started ahead without a thread."""

    def __init__(self, open_epoch, first_epoch, num_epochs, read_failed=None):
        self._open_epoch = open_epoch
        self._read_failed = read_failed  # (epoch, RuntimeError) -> the exception to raise instead
        self.epoch = int(first_epoch)
        self._epochs_left = int(num_epochs)
        self._current = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._current is None:
            if self._epochs_left == 0:
                raise StopIteration
            self._current = self._read(self._open_epoch, self.epoch)
        try:
            return self._read(next, self._current)
        except StopIteration:
            self._end_epoch()
            raise

    def _read(self, function, argument):
        try:
            return function(argument)
        except RuntimeError as exc:  # MindSpore's error for a file that went bad since the start
            if self._read_failed is None:
                raise
            with contextlib.suppress(RuntimeError):  # the broken pipeline may fail to stop too
                self.stop()
            raise self._read_failed(self.epoch, exc) from None

    def _end_epoch(self):
        self._current.stop()  # frees the pipeline now rather than whenever it is collected
        self._current = None
        self.epoch += 1
        if self._epochs_left > 0:
            self._epochs_left -= 1

    def stop(self):
        if self._current is not None:
            self._current.stop()
        self._current = None
        self._epochs_left = 0


def create_train_dataset(
    mindrecord_file,
    data,
    augmentation,
    anchors,
    img_shape,
    batch_size,
    device_num=1,
    rank_id=0,
    num_parallel_workers=None,
    shuffle=True,
    seed=None,
    start_epoch=0,
):
    """Training batches (drop remainder) of `img_shape` images, augmented as the augmentation
    section says and matched to the anchors section's anchors, sharded by rank for data-parallel
    training; num_parallel_workers and seed default to the data section's.

    Epoch e's order and augmentation depend only on (seed, e), so
    start_epoch=k gives exactly the batches an uninterrupted run sees from its epoch k on: pass the
    epoch a resumed run starts at. The result is a TrainDataStream (see there).
    """
    if not 0 <= int(rank_id) < max(1, int(device_num)):
        raise UserError(f"rank_id: expected 0..{int(device_num) - 1} for {device_num} devices, got {rank_id}")
    seed = data.seed if seed is None else seed
    matcher = AnchorMatcher(Anchors(anchors.spec(img_shape)), anchors.match_threshold, anchors.prior_scaling)
    stream = TrainDataStream(
        mindrecord_file,
        img_shape,
        augmentation,
        matcher,
        batch_size,
        max(1, int(device_num)),
        rank_id,
        _workers(num_parallel_workers or data.num_parallel_workers),
        shuffle,
        seed,
    )
    stream.start_at(start_epoch)
    return stream


def create_eval_dataset(
    mindrecord_file, img_shape, num_parallel_workers, batch_size=1, device_num=1, rank_id=0
):
    """Evaluation batches of `img_shape` images in file order (no shuffle, keeps the remainder)."""
    import mindspore.dataset as ds

    workers = _workers(num_parallel_workers)
    columns = ["img_id", "image"]
    if device_num > 1:
        # MindDataset evens out shards by repeating records; pad with a marked record instead
        # and drop it, so the shards partition the images exactly (no image evaluated twice).
        total = ds.MindDataset(mindrecord_file, columns_list=["img_id"], shuffle=False).get_dataset_size()
        padding = (-total) % device_num
        pad = (
            dict(padded_sample={"img_id": np.array([-1], np.int32), "image": b""}, num_padded=padding)
            if padding
            else {}
        )
        data = ds.MindDataset(
            mindrecord_file,
            columns_list=columns,
            num_shards=device_num,
            shard_id=rank_id,
            shuffle=False,
            **pad,
        )
        data = data.filter(predicate=lambda img_id: bool(img_id[0] >= 0), input_columns=["img_id"])
    else:
        data = ds.MindDataset(mindrecord_file, columns_list=columns, shuffle=False)
    data = data.map(
        operations=EvalSampleTransform(img_shape),
        input_columns=["image"],
        output_columns=["image", "image_shape"],
        num_parallel_workers=workers,
        python_multiprocessing=False,
    )
    data = data.project(EVAL_COLUMNS)
    return data.batch(batch_size, drop_remainder=False)
