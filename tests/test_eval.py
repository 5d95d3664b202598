"""eval.py end to end on a tiny embedded-dataset MindRecord (TINY network, saved checkpoint): the
12-number table, predictions.json/metrics.json in --eval_output_dir (and nothing in the working
directory), metrics equal to pycocotools run here on the written predictions; clear errors."""

import json
import math
import os
import re

import pytest

from tests.conftest import TINY, make_config
from tests.helpers.cli import convert_embedded_val_set, run_script

ARGS = (*TINY, "--num_classes=4")  # embedded set: 3 shapes + background
NUM_IMAGES = 3


def run_cli(script, args, cwd):
    return run_script(script, ARGS, args, cwd)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Embedded COCO-layout set (3 val images) converted by create_data.py to an eval MindRecord."""
    root, mindrecord_dir = convert_embedded_val_set(tmp_path_factory.mktemp("evaldata"), NUM_IMAGES, 21, ARGS)
    return {
        "coco_root": root,
        "mindrecord_dir": mindrecord_dir,
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import mindspore as ms
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.inference.build import build_inference_network

    ms.set_seed(1)
    net = build_inference_network(make_config(*ARGS))
    return save_checkpoint_atomic(net, str(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


@pytest.fixture(scope="module")
def eval_run(dataset, checkpoint, tmp_path_factory):
    work = tmp_path_factory.mktemp("evalrun")
    run = run_cli(
        "eval.py",
        [
            f"--checkpoint_path={checkpoint}",
            f"--mindrecord_dir={dataset['mindrecord_dir']}",
            f"--coco_root={dataset['coco_root']}",
            f"--eval_output_dir={work / 'out'}",
        ],
        cwd=str(work),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return work, run


@pytest.mark.slow
def test_prints_the_full_table_and_writes_json_only_to_the_output_dir(eval_run):
    work, run = eval_run
    rows = re.findall(r"^ (A[PR]) @\[(.+?)\]\s+= (-?\d\.\d{4})$", run.stdout, re.M)
    assert len(rows) == 12 and [r[0] for r in rows] == ["AP"] * 6 + ["AR"] * 6
    assert all(math.isfinite(float(r[2])) and -1 <= float(r[2]) <= 1 for r in rows)
    assert sorted(os.listdir(work)) == ["out"] and sorted(os.listdir(work / "out")) == [
        "analysis.json",
        "confusion_matrix.png",
        "error_breakdown.png",
        "metrics.json",
        "pr_curves.png",
        "predictions.json",
        "report.html",
    ]
    with open(work / "out" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["num_images"] == NUM_IMAGES and metrics["nms_threshold"] == 0.6
    assert [
        round(metrics[k], 4)
        for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    ] == [float(r[2]) for r in rows]
    assert "images/s" in run.stderr


@pytest.mark.slow
def test_metrics_equal_pycocotools_on_the_written_predictions(eval_run, dataset):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    work, _ = eval_run
    with open(work / "out" / "predictions.json") as f:
        predictions = json.load(f)
    with open(work / "out" / "metrics.json") as f:
        metrics = json.load(f)
    ground_truth = COCO(dataset["anno"])
    assert predictions and {p["image_id"] for p in predictions} <= set(ground_truth.getImgIds())
    assert {p["category_id"] for p in predictions} <= set(ground_truth.getCatIds())
    per_image_class = {}
    for p in predictions:
        key = (p["image_id"], p["category_id"])
        per_image_class[key] = per_image_class.get(key, 0) + 1
        assert p["score"] > 0.1 and p["bbox"][2] >= 0 and p["bbox"][3] >= 0
    assert max(per_image_class.values()) <= 100
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(predictions), "bbox")
    evaluator.params.imgIds = sorted(ground_truth.getImgIds())
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert metrics["AP"] == pytest.approx(evaluator.stats[0]) and metrics["ARl"] == pytest.approx(
        evaluator.stats[11]
    )


@pytest.mark.slow
def test_missing_mindrecord_says_how_to_create_it(dataset, checkpoint, tmp_path):
    run = run_cli(
        "eval.py",
        [
            f"--checkpoint_path={checkpoint}",
            f"--mindrecord_dir={tmp_path / 'none'}",
            f"--coco_root={dataset['coco_root']}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert f"no MindRecord 'retinanet_eval.mindrecord' in {tmp_path / 'none'}" in run.stderr
    assert "python create_data.py --create_dataset=coco --is_training=false" in run.stderr
    assert os.listdir(tmp_path) == []


def test_needs_a_checkpoint_or_the_hub(dataset, tmp_path):
    run = run_cli("eval.py", [f"--mindrecord_dir={dataset['mindrecord_dir']}"], cwd=str(tmp_path))
    assert run.returncode == 2 and "give exactly one of --checkpoint_path" in run.stderr


@pytest.mark.slow
def test_a_checkpoint_of_another_network_is_refused_by_name(dataset, checkpoint, tmp_path):
    run = run_cli(
        "eval.py",
        [
            f"--checkpoint_path={checkpoint}",
            f"--mindrecord_dir={dataset['mindrecord_dir']}",
            f"--coco_root={dataset['coco_root']}",
            "--fpn_channels=32",
            f"--eval_output_dir={tmp_path / 'out'}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert "does not fit the network" in run.stderr and "wrong shape" in run.stderr
    assert not (tmp_path / "out").exists()


def test_json_is_written_atomically(tmp_path):
    from nasfpn.core.atomic import write_json_atomic

    target = tmp_path / "metrics.json"
    write_json_atomic(str(target), {"AP": 0.5})
    with pytest.raises(TypeError):
        write_json_atomic(str(target), {"AP": object()})  # fails half-way through json.dump
    assert json.loads(target.read_text()) == {"AP": 0.5} and os.listdir(tmp_path) == ["metrics.json"]


class _ReportParser:
    """The report's section ids, table rows per section and embedded image sources."""

    def __init__(self, text):
        from html.parser import HTMLParser

        self.sections, self.rows, self.images = [], {}, []
        parser = HTMLParser()
        parser.handle_starttag = self._start
        parser.feed(text)

    def _start(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "tr" and self.sections:
            self.rows[self.sections[-1]] = self.rows.get(self.sections[-1], 0) + 1
        elif tag == "img":
            self.images.append((self.sections[-1], attrs["src"]))


@pytest.mark.slow
def test_per_class_results_and_a_self_contained_report(eval_run, dataset):
    import base64

    work, run = eval_run
    with open(work / "out" / "metrics.json") as f:
        metrics = json.load(f)
    with open(dataset["anno"]) as f:
        names = {c["id"]: c["name"] for c in json.load(f)["categories"]}
    per_class = metrics["per_class"]
    assert sorted(r["name"] for r in per_class) == sorted(names.values())
    aps = [r["AP"] for r in per_class if r["AP"] >= 0]
    assert aps == sorted(aps)  # worst first
    # the per-class APs average to COCOeval's AP (the summary is the mean over classes with boxes)
    assert sum(aps) / len(aps) == pytest.approx(metrics["AP"], abs=1e-12)
    assert "per class, worst first" in run.stderr and "error breakdown" in run.stderr
    with open(work / "out" / "report.html", encoding="utf-8") as f:
        text = f.read()
    report = _ReportParser(text)
    assert report.sections == [
        "sources",
        "summary",
        "per-class",
        "errors",
        "pr-curves",
        "confusion",
        "worst-images",
    ]
    # what was evaluated, named in both: the model file, the annotation file, the MindRecord, the date
    for key in ("model_path", "anno_path", "anno_sha256", "mindrecord", "evaluated_at"):
        assert metrics[key] and metrics[key] in text, key
    assert report.rows["summary"] == 13 and report.rows["per-class"] == 1 + len(names)
    for _, src in report.images:  # every image embedded, none pointing at a file
        kind, data = src.split(",", 1)
        assert kind in ("data:image/png;base64", "data:image/jpeg;base64")
        magic = base64.b64decode(data)[:4]
        assert magic in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
    shown = [s for s, _ in report.images if s == "worst-images"]
    assert 1 <= len(shown) <= NUM_IMAGES
    with open(work / "out" / "analysis.json") as f:
        analysis = json.load(f)
    matrix = analysis["confusion_matrix"]
    assert matrix["labels"][-1] == "background" and len(matrix["counts"]) == len(names) + 1


def test_an_output_folder_that_cannot_be_written_is_refused_before_inference(dataset, checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    run = run_cli(
        "eval.py",
        [
            f"--checkpoint_path={checkpoint}",
            f"--mindrecord_dir={dataset['mindrecord_dir']}",
            f"--coco_root={dataset['coco_root']}",
            f"--eval_output_dir={blocker / 'out'}",
        ],
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: --eval_output_dir={blocker / 'out'}: a part "
        f"of this path is a file ({blocker}), expected "
        "folders for the output folder; give another path"
    )
    assert "evaluating" not in run.stderr  # refused before the network ran
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_overwrite_that_fails_midway_leaves_the_earlier_folder_as_it_was(
    eval_run, dataset, checkpoint, tmp_path
):
    """--overwrite=True writes into a fresh folder swapped in at the end: a run that fails after
    its metrics.json (a real fault: a file size limit the plots exceed, set on the process) leaves
    the earlier run's folder exactly as it was (not its report.html beside the new metrics.json),
    and no fresh folder behind."""
    import resource
    import shutil
    import subprocess
    import sys

    from tests.helpers.cli import ENV, assert_one_line_error

    work, _ = eval_run
    out = tmp_path / "out"
    shutil.copytree(work / "out", out)
    (out / "notes.txt").write_text("mine")
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    sizes = {name: len(data) for name, data in before.items()}
    # The same network on the same images writes files of the same sizes: a limit above every JSON
    # file and below report.html (the plots and pictures embedded) lets metrics.json be written and
    # fails the report, the last file.
    limit = max(sizes[n] for n in ("predictions.json", "metrics.json", "analysis.json")) + 4096
    assert limit < sizes["report.html"]

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = subprocess.run(
        [
            sys.executable,
            os.path.join(os.path.dirname(os.path.dirname(__file__)), "eval.py"),
            *ARGS,
            f"--checkpoint_path={checkpoint}",
            f"--mindrecord_dir={dataset['mindrecord_dir']}",
            f"--coco_root={dataset['coco_root']}",
            f"--eval_output_dir={out}",
            "--overwrite=True",
        ],
        cwd=str(tmp_path),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit_file_size,
    )
    assert_one_line_error(run, 2, "file too large")
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the fresh folder went with the failed run
