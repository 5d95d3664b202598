"""Where data lives: MindRecord prefixes, annotation paths, and which files count as shards."""
import os

from src.data.converters import existing_outputs
from src.data.layout import EVAL_PREFIX, TRAIN_PREFIX, annotation_path, split_prefix
from tests.conftest import make_config


def test_split_prefixes_are_the_release_names():
    assert (split_prefix(True), split_prefix(False)) == ("retinanet.mindrecord", "retinanet_eval.mindrecord")
    assert (TRAIN_PREFIX, EVAL_PREFIX) == (split_prefix(True), split_prefix(False))


def test_annotation_path_from_coco_root_unless_given():
    cfg = make_config("--coco_root=/data/coco")
    assert annotation_path(cfg, "val2017") == os.path.join("/data/coco", "annotations", "instances_val2017.json")
    given = make_config("--coco_root=/data/coco", "--anno_path=/elsewhere/a.json")
    assert annotation_path(given, "val2017") == "/elsewhere/a.json"


def test_only_numbered_shards_and_their_index_files_are_existing_outputs(tmp_path):
    names = ["p0", "p0.db", "p12", "p12.db", "p", "p.db",        # shards (and a single-file prefix)
             "p3bd", "p1.d", "p2db", "p.db.db", "pq0", "other0"]  # not shards of prefix "p"
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = [os.path.basename(p) for p in existing_outputs(str(tmp_path), "p")]
    assert found == sorted(["p0", "p0.db", "p12", "p12.db", "p", "p.db"])
