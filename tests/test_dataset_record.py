"""The MindRecord carries its dataset (nasfpn/data/dataset_record.py): create_data.py writes the
record beside the shards, train.py takes the classes from it, eval.py the ground truth, and a
contradicting option or annotation file is refused; an older MindRecord without one still works
where the options are given."""

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import sys

import pytest

import create_data
from nasfpn.data.dataset_record import (
    DatasetRecordError,
    annotation_given,
    eval_annotation,
    read_dataset_record,
    record_path,
)
from nasfpn.data.embedded import generate_embedded_dataset
from tests.conftest import REPO_ROOT, make_config
from tests.helpers.cli import run_command
from tests.helpers.tiny_training import TRAIN_ARGS

SHAPES = ["background", "circle", "square", "triangle"]  # the embedded set's categories, by id
TINY_VIEW = ("--img_shape=[128,128]", "--train_random_crop=false")
NO_CLASS_OPTIONS = tuple(a for a in TRAIN_ARGS if not a.startswith("--num_classes"))


def _convert(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        first = create_data.main(["--num_shards=2", *args])
    return first, out.getvalue()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The embedded set (8 train / 4 val images of 96 px) converted by create_data.py without
    --num_classes or --coco_classes."""
    work = tmp_path_factory.mktemp("record")
    root = generate_embedded_dataset(str(work / "coco"), 8, 4, 96, seed=1)
    out = str(work / "mr")
    train, printed = _convert(f"--coco_root={root}", f"--mindrecord_dir={out}")
    val, _ = _convert(f"--coco_root={root}", f"--mindrecord_dir={out}", "--is_training=False")
    return {"work": work, "root": root, "mr": out, "train": train, "val": val, "printed": printed}


def test_the_record_names_the_classes_source_and_images(converted):
    import mindspore.dataset as ds

    anno = os.path.join(converted["root"], "annotations", "instances_train2017.json")
    with open(anno, "rb") as f:
        data = f.read()
    coco = json.loads(data)
    # reopened from the file, not from the converter's memory
    with open(record_path(converted["mr"], "retinanet.mindrecord")) as f:
        raw = json.load(f)
    record = read_dataset_record(converted["train"])
    assert raw["class_names"] == list(record.class_names) == SHAPES
    assert record.num_classes == 4 and "num_classes: 4 from" in converted["printed"]
    assert record.class_rule == "by file order" and record.category_ids == (1, 2, 3)
    assert record.annotation_path == os.path.abspath(anno)
    assert record.annotation_sha256 == hashlib.sha256(data).hexdigest()
    assert record.image_dir == os.path.abspath(os.path.join(converted["root"], "train2017"))
    assert (record.split, record.split_name, record.source_format) == ("train", "train2017", "coco")
    assert record.options["empty_images_applied"] == "keep"
    expected = sorted((i["id"], i["file_name"], i["height"], i["width"]) for i in coco["images"])
    assert sorted((i.id, i.file_name, i.height, i.width) for i in record.images) == expected
    count = ds.MindDataset(converted["train"], columns_list=["img_id"], shuffle=False).get_dataset_size()
    assert raw["image_count"] == record.image_count == count == 8


def test_a_contradicting_num_classes_is_refused_by_create_data(converted, tmp_path):
    with pytest.raises(ValueError, match=r"has 3 categories, so --num_classes must be 4 .*, got 81"):
        _convert(f"--coco_root={converted['root']}", f"--mindrecord_dir={tmp_path}", "--num_classes=81")
    assert os.listdir(tmp_path) == []


def test_overwriting_replaces_the_record_with_the_new_conversion(converted, tmp_path):
    out = str(tmp_path / "mr")
    first, _ = _convert(f"--coco_root={converted['root']}", f"--mindrecord_dir={out}", "--is_training=False")
    before = read_dataset_record(first)
    _convert(
        f"--coco_root={converted['root']}",
        f"--mindrecord_dir={out}",
        "--is_training=False",
        "--overwrite=True",
        "--coco_classes=[background,triangle,circle,square]",
        "--num_classes=4",
    )
    after = read_dataset_record(first)
    assert before.class_rule == "by file order" and after.class_rule == "by COCO name"
    assert list(after.class_names) == ["background", "triangle", "circle", "square"]
    assert after.category_ids == (3, 1, 2)


# ---- train.py: the classes come from the MindRecord --------------------------------------------


def test_train_takes_the_classes_and_refuses_contradicting_options(converted):
    from nasfpn.training.model_record import apply_dataset_classes

    log = logging.getLogger("test")
    cfg, record = apply_dataset_classes(make_config(*NO_CLASS_OPTIONS), None, converted["train"], log)
    assert cfg.num_classes == 4 and classes_of(cfg, None, log, record) == (SHAPES, [1, 2, 3])
    with pytest.raises(
        DatasetRecordError, match=r"--num_classes=81 contradicts .*retinanet.mindrecord0.* 4 classes"
    ):
        apply_dataset_classes(make_config("--num_classes=81"), None, converted["train"], log)
    other_order = make_config("--coco_classes=[background,square,circle,triangle]")
    with pytest.raises(DatasetRecordError, match=r"--coco_classes gives .* \[background, square, circle"):
        apply_dataset_classes(other_order, None, converted["train"], log)
    # a list under which the categories map as they were converted is no contradiction
    same = make_config("--coco_classes=[background,circle,square,triangle]", "--num_classes=4")
    assert apply_dataset_classes(same, None, converted["train"], log)[0].num_classes == 4


@pytest.fixture(scope="module")
def trained(converted):
    """One epoch of train.py without --num_classes, then eval.py with --mindrecord_dir and the
    checkpoint only (real processes)."""
    ckpt_dir = converted["work"] / "ckpt"
    run = run_command(
        [
            sys.executable,
            "train.py",
            *NO_CLASS_OPTIONS,
            f"--mindrecord_dir={converted['mr']}",
            f"--save_checkpoint_path={ckpt_dir}",
            "--epoch_size=1",
            "--keep_checkpoint_max=1",
        ],
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    folder = ckpt_dir / "ckpt_0"
    ckpt = str(folder / next(n for n in sorted(os.listdir(folder)) if n.endswith(".ckpt")))
    eval_dir = converted["work"] / "eval"
    evaluation = run_command(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "eval.py"),  # run from another folder, as a user would
            f"--mindrecord_dir={converted['mr']}",
            f"--checkpoint_path={ckpt}",
            f"--eval_output_dir={eval_dir}",
            "--report_images=2",
        ],
        cwd=converted["work"],
        timeout=600,
    )
    return {"ckpt": ckpt, "train": run, "eval": evaluation, "eval_dir": eval_dir}


@pytest.mark.slow
def test_train_without_num_classes_gives_a_checkpoint_naming_the_datasets_classes(trained):
    from nasfpn.model_files.description import read_description

    description = read_description(trained["ckpt"])
    assert list(description.class_names) == SHAPES
    assert description.options["num_classes"] == 4
    assert "carry no class names" not in trained["train"].stderr


@pytest.mark.slow
def test_eval_needs_only_the_mindrecord_and_the_model_and_says_what_it_evaluated(trained, converted):
    run = trained["eval"]
    assert run.returncode == 0, run.stderr[-3000:]
    with open(trained["eval_dir"] / "metrics.json") as f:
        metrics = json.load(f)
    anno = os.path.join(converted["root"], "annotations", "instances_val2017.json")
    assert metrics["anno_path"] == os.path.abspath(anno)
    assert metrics["model_path"] == os.path.abspath(trained["ckpt"])
    assert metrics["mindrecord"] == os.path.abspath(converted["val"])
    assert metrics["num_images"] == 4 and metrics["evaluated_at"].startswith("20")
    report = (trained["eval_dir"] / "report.html").read_text()
    for value in (
        metrics["model_path"],
        metrics["anno_path"],
        metrics["mindrecord"],
        metrics["evaluated_at"],
    ):
        assert value in report


# ---- eval.py's ground truth: the recorded file, or an override checked against it --------------


def _val_anno(converted):
    return os.path.join(converted["root"], "annotations", "instances_val2017.json")


def _edited_copy(converted, tmp_path, edit):
    with open(_val_anno(converted)) as f:
        coco = json.load(f)
    edit(coco)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(coco))
    return str(path)


def test_eval_takes_the_recorded_annotation_file(converted):
    path, record = eval_annotation_of(make_config(), converted["val"], logging.getLogger("test"))
    assert path == os.path.abspath(_val_anno(converted)) and record.split == "eval"


def test_an_override_of_other_images_is_refused(converted, tmp_path):
    def rename(coco):
        coco["images"][1]["file_name"] = "elsewhere.jpg"

    def resize(coco):
        coco["images"][2]["height"] = 97

    log = logging.getLogger("test")
    for edit, fragment in ((rename, "is 'elsewhere.jpg', the MindRecord's"), (resize, "is 97x96")):
        override = make_config(f"--anno_path={_edited_copy(converted, tmp_path, edit)}")
        with pytest.raises(DatasetRecordError, match=r"does not describe the images of .*" + fragment):
            eval_annotation_of(override, converted["val"], log)


def test_an_edited_override_is_warned_about_with_both_hashes(converted, tmp_path, caplog):
    def move_a_box(coco):
        coco["annotations"][0]["bbox"][0] += 5

    path = _edited_copy(converted, tmp_path, move_a_box)
    with caplog.at_level(logging.WARNING, logger="test"):
        got, _ = eval_annotation_of(
            make_config(f"--anno_path={path}"), converted["val"], logging.getLogger("test")
        )
    assert got == path
    recorded = read_dataset_record(converted["val"]).annotation_sha256
    with open(path, "rb") as f:
        edited = hashlib.sha256(f.read()).hexdigest()
    (message,) = [r.getMessage() for r in caplog.records]
    assert recorded[:16] in message and edited[:16] in message and recorded != edited


def test_a_moved_annotation_file_and_an_old_mindrecord_are_one_line_errors(converted, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(converted["root"], folder / "coco")
    mr = str(folder / "mr")
    first, _ = _convert(f"--coco_root={folder / 'coco'}", f"--mindrecord_dir={mr}", "--is_training=False")
    moved = folder / "moved.json"
    os.replace(folder / "coco" / "annotations" / "instances_val2017.json", moved)
    log = logging.getLogger("test")
    with pytest.raises(
        DatasetRecordError, match=r"instances_val2017.json, the annotation file .* is not there"
    ):
        eval_annotation_of(make_config(), first, log)
    assert eval_annotation_of(make_config(f"--anno_path={moved}"), first, log)[0] == str(moved)
    # an older MindRecord: no record; works with the options, a one-line error without
    os.remove(record_path(mr, "retinanet_eval.mindrecord"))
    assert eval_annotation_of(make_config(f"--anno_path={moved}"), first, log) == (str(moved), None)
    with pytest.raises(DatasetRecordError, match=r"has no dataset record .*: give --anno_path"):
        eval_annotation_of(make_config(), first, log)


def test_eval_of_another_datasets_mindrecord_is_refused(converted, tmp_path):
    """The issue's case: the MindRecord of another dataset (here: 80 px images) against this
    annotation file."""
    other = generate_embedded_dataset(str(tmp_path / "other"), 4, 4, 80, seed=7)
    first, _ = _convert(f"--coco_root={other}", f"--mindrecord_dir={tmp_path / 'mr'}", "--is_training=False")
    given = make_config(f"--anno_path={_val_anno(converted)}")
    with pytest.raises(
        DatasetRecordError, match=r"4 of 4 differ: image id \d+ is 96x96, the MindRecord's 80x80"
    ):
        eval_annotation_of(given, first, logging.getLogger("test"))


# ---- the browser: the dataset's names, its documented options, its real source ------------------


def classes_of(cfg, pretrained, log, record=None):
    """training_classes with the sections and the keys a Config was given."""
    from nasfpn.training.model_record import training_classes

    training = cfg.training
    given = "num_classes" in cfg.explicit_keys
    return training_classes(cfg.model, cfg.data, training.filter_weight, pretrained, log, record, given)


def eval_annotation_of(cfg, mindrecord, log):
    """eval_annotation with the data section and the keys a Config was given."""
    return eval_annotation(cfg.data, annotation_given(cfg.explicit_keys), mindrecord, log)


def sections(cfg, *names):
    return tuple(getattr(cfg, name) for name in names)


def test_the_browser_draws_the_datasets_names_from_either_source(converted, tmp_path):
    from nasfpn.data.browse import browse, coco_folder_records, mindrecord_source

    # 81 default classes and names in the config: the MindRecord's record decides, not them
    records, names, source = mindrecord_source(
        *sections(make_config(f"--mindrecord_dir={converted['mr']}"), "data", "model")
    )
    assert names == SHAPES
    assert converted["train"] in source and "instances_train2017.json" in source
    # --anno_path and --train_image_dir, as create_data.py takes them; coco_root points nowhere
    anno = os.path.join(converted["root"], "annotations", "instances_train2017.json")
    images = os.path.join(converted["root"], "train2017")
    given = make_config(
        *TINY_VIEW,
        "--browse_from=coco",
        f"--anno_path={anno}",
        f"--train_image_dir={images}",
        "--coco_root=/none",
    )
    coco_records, coco_names, coco_source = coco_folder_records(given.data, given.model.coco_classes)
    assert coco_names == SHAPES and coco_source == f"{anno} (images in {images})"
    cfg = make_config(*TINY_VIEW)
    view = (cfg.model, cfg.augmentation, cfg.data.seed)
    # all 8 images: the shards' order is not the file's
    from_record = sorted(browse(*view, records, str(tmp_path / "mr"), 8, 0, names), key=os.path.basename)
    from_coco = sorted(
        browse(*view, coco_records, str(tmp_path / "coco"), 8, 0, coco_names), key=os.path.basename
    )
    assert [os.path.basename(p) for p in from_record] == [os.path.basename(p) for p in from_coco]
    for a, b in zip(from_record, from_coco):  # the same images, boxes and names: the same pictures
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()


def test_an_older_mindrecord_of_other_classes_without_num_classes_is_refused(converted):
    """No dataset record: the training annotation file says 4 classes, the default says 81 (the
    issue's silent 81-class run); a given --num_classes still trains as before."""

    log = logging.getLogger("test")
    with pytest.raises(DatasetRecordError, match=r"gives 4 classes but --num_classes is the default 81"):
        classes_of(make_config(f"--coco_root={converted['root']}"), None, log)
    given = make_config(f"--coco_root={converted['root']}", "--num_classes=4")
    assert classes_of(given, None, log) == (SHAPES, [1, 2, 3])


def test_the_record_of_a_shard_is_found_by_its_prefix_and_shard_count(converted, tmp_path):
    """'set1' in 2 shards writes set10 + set11; 'set10' in one shard writes set10: each first
    shard finds its own record, and a record never describes another prefix's shards."""
    from nasfpn.data.dataset_record import record_path_of_shard

    common = (f"--coco_root={converted['root']}", "--is_training=False")
    sharded, _ = _convert(*common, f"--mindrecord_dir={tmp_path / 'a'}", "--prefix=set1")
    single, _ = (
        create_data.main([*common, f"--mindrecord_dir={tmp_path / 'b'}", "--prefix=set10", "--num_shards=1"]),
        "",
    )
    assert os.path.basename(sharded) == os.path.basename(single) == "set10"
    assert record_path_of_shard(sharded) == str(tmp_path / "a" / "set1.dataset.json")
    assert record_path_of_shard(single) == str(tmp_path / "b" / "set10.dataset.json")
    shutil.copy(tmp_path / "a" / "set1.dataset.json", tmp_path / "b")  # a sharded set1's record beside
    assert record_path_of_shard(single) == str(tmp_path / "b" / "set10.dataset.json")
    os.remove(tmp_path / "b" / "set10.dataset.json")
    assert read_dataset_record(single) is None


@pytest.mark.slow
def test_train_refuses_a_contradicting_num_classes_in_one_line(converted, tmp_path):
    from tests.helpers.cli import assert_one_line_error

    run = run_command(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "train.py"),
            *NO_CLASS_OPTIONS,
            "--num_classes=81",
            f"--mindrecord_dir={converted['mr']}",
            f"--save_checkpoint_path={tmp_path / 'ckpt'}",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert_one_line_error(run, 2, "--num_classes=81 contradicts", "whose dataset has 4 classes")
    assert not (tmp_path / "ckpt").exists()  # refused before anything was written
