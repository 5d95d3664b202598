"""The training data stream is a function of (seed, epoch): a run resumed at epoch k sees, bit for
bit, the batches an uninterrupted run sees from epoch k on - with any number of workers and per
data-parallel shard - and every epoch visits every image once in a new order."""

import os

import numpy as np
import pytest

from nasfpn.data.converters import Summary, coco_samples, write_mindrecord
from nasfpn.data.embedded import generate_embedded_dataset
from nasfpn.core.errors import UserError
from tests.conftest import make_config

SEED = 11
EPOCHS = 3
BATCH = 2
NUM_IMAGES = 12  # divisible by BATCH x 2 shards: each epoch (and each shard's part) is whole batches
CONFIG = ("--img_shape=[128,128]", "--num_classes=4", "--anchor_size=[16,32,64,128,256]")


@pytest.fixture(scope="module")
def cfg():
    return make_config(*CONFIG)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A 12-image MindRecord split over 2 files (positions run across both) and its raw rows."""
    import mindspore.dataset as ds

    root = generate_embedded_dataset(
        str(tmp_path_factory.mktemp("det") / "coco"), NUM_IMAGES, 1, size=64, seed=5
    )
    first, _ = write_mindrecord(
        coco_samples(
            os.path.join(root, "annotations", "instances_train2017.json"),
            os.path.join(root, "train2017"),
            True,
            Summary(),
        ),
        str(tmp_path_factory.mktemp("det_mr")),
        "train.mindrecord",
        num_shards=2,
        progress=False,
    )
    rows = ds.MindDataset(first, columns_list=["img_id", "image", "annotation"], shuffle=False)
    raw = {
        int(r["img_id"][0]): (r["image"].tobytes(), r["annotation"])
        for r in rows.create_dict_iterator(output_numpy=True, num_epochs=1)
    }
    assert len(raw) == NUM_IMAGES
    return first, raw


@pytest.fixture(scope="module")
def reference(records, cfg):
    """Per epoch: the training sample of every image, computed one image at a time from
    augmentation_rng(seed, img_id, epoch) alone, keyed by the image's bytes."""
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from nasfpn.data.pipeline import augmentation_rng
    from nasfpn.data.transforms import decode_image, train_transform

    matcher = AnchorMatcher(
        Anchors(cfg.anchors.spec(cfg.model.img_shape)), cfg.match_threshold, cfg.prior_scaling
    )
    per_epoch = []
    for epoch in range(EPOCHS):
        samples = {}
        for img_id, (encoded, annotation) in records[1].items():
            rng = augmentation_rng(SEED, img_id, epoch)
            sample = train_transform(
                decode_image(encoded),
                annotation[:, :4].astype(np.float32),
                annotation[:, 4],
                tuple(cfg.img_shape),
                rng,
                matcher,
                cfg.train_random_crop,
            )
            samples[sample[0].tobytes()] = (img_id, sample)
        assert len(samples) == NUM_IMAGES  # every image's sample is distinguishable
        per_epoch.append(samples)
    for img_id in records[1]:  # augmentation is drawn afresh each epoch
        images = [image for samples in per_epoch for image, (i, _) in samples.items() if i == img_id]
        assert len(set(images)) == EPOCHS
    return per_epoch


def run_epochs(stream, num_epochs):
    """All batches of num_epochs epochs from one iterator: [epoch][batch] -> tuple of arrays."""
    iterator = stream.create_tuple_iterator(num_epochs=num_epochs, output_numpy=True)
    epochs = [[tuple(batch) for batch in iterator] for _ in range(num_epochs)]
    assert list(iterator) == []  # the iterator ends after num_epochs
    return epochs


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for got_epoch, want_epoch in zip(got, want):
        assert len(got_epoch) == len(want_epoch)
        for got_batch, want_batch in zip(got_epoch, want_epoch):
            for a, b in zip(got_batch, want_batch):
                assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def image_ids(epoch_batches, samples):
    """The img_id behind every row of an epoch, in order; each row must equal (bitwise) that
    image's reference sample for this epoch, targets included."""
    ids = []
    for batch in epoch_batches:
        for row in zip(*batch):
            img_id, sample = samples[row[0].tobytes()]
            for got, want in zip(row, sample):
                np.testing.assert_array_equal(got, np.asarray(want).reshape(got.shape))
            ids.append(img_id)
    return ids


def make_stream(records, cfg, **kwargs):
    from nasfpn.data.pipeline import create_train_dataset

    return create_train_dataset(
        records[0], cfg.data, cfg.augmentation, cfg.anchors, cfg.model.img_shape, BATCH, seed=SEED, **kwargs
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_resumed_stream_repeats_the_uninterrupted_epochs(records, cfg, reference, workers):
    stream = make_stream(records, cfg, num_parallel_workers=workers)
    assert stream.get_dataset_size() == NUM_IMAGES // BATCH
    full = run_epochs(stream, EPOCHS)
    for start in range(1, EPOCHS):
        resumed = run_epochs(
            make_stream(records, cfg, num_parallel_workers=workers, start_epoch=start), EPOCHS - start
        )
        assert_same_batches(resumed, full[start:])
    orders = [image_ids(batches, reference[epoch]) for epoch, batches in enumerate(full)]
    for order in orders:
        assert sorted(order) == sorted(records[1])  # every image once per epoch
    assert len({tuple(order) for order in orders}) == EPOCHS  # each epoch its own order


def test_shards_resume_and_partition_every_epoch(records, cfg, reference):
    shards = []
    for rank in range(2):
        full = run_epochs(
            make_stream(records, cfg, num_parallel_workers=2, device_num=2, rank_id=rank), EPOCHS
        )
        assert len(full[0]) == NUM_IMAGES // 2 // BATCH
        resumed = run_epochs(
            make_stream(
                records, cfg, num_parallel_workers=2, device_num=2, rank_id=rank, start_epoch=EPOCHS - 1
            ),
            1,
        )
        assert_same_batches(resumed, full[EPOCHS - 1 :])
        shards.append([image_ids(batches, reference[epoch]) for epoch, batches in enumerate(full)])
    for epoch in range(EPOCHS):
        first, second = shards[0][epoch], shards[1][epoch]
        assert not set(first) & set(second) and sorted(first + second) == sorted(records[1])
    assert shards[0][0] != shards[0][1]


def test_dict_and_tuple_iterators_agree_and_one_loop_is_one_epoch(records, cfg):
    stream = make_stream(records, cfg, num_parallel_workers=2, start_epoch=1)
    tuples = run_epochs(stream, 2)
    dicts = stream.create_dict_iterator(num_epochs=2, output_numpy=True)
    first_two = [next(dicts), next(dicts)]
    rest_of_first = list(dicts)  # a new loop after a partial one finishes that epoch (as MindSpore's)
    second = list(dicts)
    assert list(dicts) == []
    for want_epoch, got_epoch in zip(tuples, [first_two + rest_of_first, second]):
        assert len(got_epoch) == len(want_epoch) == stream.get_dataset_size()
        for want, got in zip(want_epoch, got_epoch):
            assert list(got) == stream.get_col_names() == ["image", "gt_loc", "gt_label", "num_match"]
            assert all(np.array_equal(a, b) for a, b in zip(want, got.values()))


def test_shard_positions_match_minddataset_sizes_and_cover_each_epoch(records):
    """Sharding as MindDataset does it (ceil(N / shards) each, topped up by wrapping round), for
    shard counts that do and do not divide the data set."""
    import mindspore.dataset as ds
    from nasfpn.data.pipeline import epoch_order, shard_positions

    for device_num in (1, 2, 5, 7, 13):
        order = epoch_order(NUM_IMAGES, SEED, 4)
        parts = [shard_positions(order, device_num, rank) for rank in range(device_num)]
        sizes = [
            ds.MindDataset(
                records[0], columns_list=["img_id"], num_shards=device_num, shard_id=rank
            ).get_dataset_size()
            if device_num > 1
            else NUM_IMAGES
            for rank in range(device_num)
        ]
        assert [len(p) for p in parts] == sizes
        union = np.concatenate(parts)
        assert set(union.tolist()) == set(range(NUM_IMAGES))
        assert len(union) - NUM_IMAGES == (-NUM_IMAGES) % device_num  # only the top-up repeats
    assert np.array_equal(epoch_order(NUM_IMAGES, SEED, 3), epoch_order(NUM_IMAGES, SEED, 3))
    assert not np.array_equal(epoch_order(NUM_IMAGES, SEED, 3), epoch_order(NUM_IMAGES, SEED + 1, 3))
    assert epoch_order(NUM_IMAGES, SEED, 3, shuffle=False).tolist() == list(range(NUM_IMAGES))


def test_bad_start_epoch_or_rank_is_a_user_error(records, cfg):
    with pytest.raises(UserError, match=r"start_epoch: expected an epoch number >= 0, got -1"):
        make_stream(records, cfg, start_epoch=-1)
    with pytest.raises(UserError, match=r"rank_id: expected 0\.\.1 for 2 devices, got 2"):
        make_stream(records, cfg, device_num=2, rank_id=2)
