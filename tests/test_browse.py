"""The dataset browser draws what training trains on: each augmented view equals, exactly, an
image and its targets of the real training pipeline for that epoch; a COCO folder and its
MindRecord give the same pictures."""

import os
import sys

import numpy as np
import pytest

from tests.conftest import make_config
from tests.helpers.cli import run_command
from tests.helpers.tiny_training import TRAIN_ARGS

ARGS = TRAIN_ARGS + ("--train_random_crop=true",)
# the tiny MindRecord has no dataset record (made as an older version did): its boxes are named
# by coco_classes, which the COCO folder's categories then map onto by name, the same names
SHAPE_NAMES = "--coco_classes=[background,circle,square,triangle]"


def run_browse(args, cwd):
    return run_command([sys.executable, "-m", "nasfpn.data.browse", *args], cwd, timeout=300)


@pytest.fixture(scope="module")
def data(tiny_mindrecord):
    return tiny_mindrecord


@pytest.mark.parametrize("epoch", [0, 3])
def test_augmented_views_are_the_training_pipelines_samples(data, epoch):
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from nasfpn.data.browse import augmented_view, mindrecord_records
    from nasfpn.data.pipeline import create_train_dataset
    from nasfpn.data.transforms import normalize_chw

    mindrecord_dir, _ = data
    cfg = make_config(*ARGS)
    record = os.path.join(mindrecord_dir, "retinanet.mindrecord0")
    dataset = create_train_dataset(
        record,
        cfg.data,
        cfg.augmentation,
        cfg.anchors,
        cfg.model.img_shape,
        batch_size=1,
        shuffle=False,
        start_epoch=epoch,
    )
    trained = list(dataset.create_dict_iterator(output_numpy=True, num_epochs=1))
    matcher = AnchorMatcher(
        Anchors(cfg.anchors.spec(cfg.model.img_shape)), cfg.match_threshold, cfg.prior_scaling
    )
    views = []
    for img_id, encoded, rows in mindrecord_records(record):
        image, boxes, labels = augmented_view(
            cfg.augmentation, cfg.model.img_shape, cfg.seed, img_id, encoded, rows, epoch
        )
        views.append((normalize_chw(image), *matcher.encode(boxes, labels)))
    assert len(views) == len(trained) == 8
    for batch in trained:  # file order may differ between the reader and the pipeline
        same = [v for v in views if np.array_equal(v[0], batch["image"][0])]
        assert len(same) == 1
        np.testing.assert_array_equal(same[0][1], batch["gt_loc"][0])
        np.testing.assert_array_equal(same[0][2], batch["gt_label"][0])


@pytest.mark.slow
def test_browse_command_from_mindrecord_and_from_the_coco_folder(data, tmp_path):
    mindrecord_dir, coco_root = data
    common = ["--browse_images=3", "--browse_epoch=2", SHAPE_NAMES]
    from_record = run_browse(
        [*ARGS, *common, f"--mindrecord_dir={mindrecord_dir}", f"--browse_output_dir={tmp_path / 'mr'}"],
        cwd=str(tmp_path),
    )
    assert from_record.returncode == 0, from_record.stderr[-2000:]
    from_coco = run_browse(
        [
            *ARGS,
            *common,
            "--browse_from=coco",
            f"--coco_root={coco_root}",
            f"--browse_output_dir={tmp_path / 'coco'}",
        ],
        cwd=str(tmp_path),
    )
    assert from_coco.returncode == 0, from_coco.stderr[-2000:]
    assert "3 augmented training images (epoch 2)" in from_coco.stdout
    names = sorted(os.listdir(tmp_path / "coco"))
    assert len(names) == 3 and all(n.endswith("_e2.jpg") for n in names)
    for name in names:  # the MindRecord holds the folder's images: the same pictures, byte for byte
        assert (tmp_path / "coco" / name).read_bytes() == (tmp_path / "mr" / name).read_bytes()


def test_missing_mindrecord_says_what_to_do(tmp_path):
    run = run_browse([f"--mindrecord_dir={tmp_path / 'none'}"], cwd=str(tmp_path))
    assert run.returncode == 2
    assert (
        run.stderr.startswith("error: ")
        and "--browse_from=coco --anno_path=JSON --train_image_dir=DIR" in run.stderr
    )
