"""Fault injection on conversion, inference and evaluation: nothing silently wrong, one error policy.

Each test damages an input the way users and tools do (a truncated JPEG, an id listed twice, an id
past int32, a byte-order mark, a labelling tool's JSON without iscrowd/area, a second conversion
into the same folder, a killed conversion, a model exported at another size, a corrupt model file)
and checks the files left behind, not only the exit status. Exit statuses: 0 ok, 1 run failed,
2 bad input (one line `error: ...`, no traceback), 3 finished with skipped inputs.
"""

import copy
import glob
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, TINY, make_config
from tests.helpers import cli
from tests.helpers.cli import ENV, assert_one_line_error

ARGS = (*TINY, "--num_classes=4")  # the embedded set: 3 shapes + background
SIDE = 64  # image side of the small test sets


def run_script(script, args, cwd, timeout=300):
    return cli.run_script(script, (), args, cwd, timeout)


def encoded_image(seed, ext=".jpg", side=SIDE):
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (5, 5), 0)
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read_mindrecord(first_shard):
    """img_id -> (image bytes, annotation rows) of every record, read back with MindSpore."""
    from mindspore.mindrecord import FileReader

    reader = FileReader(first_shard)
    try:
        return {int(r["img_id"][0]): (bytes(r["image"]), r["annotation"].tolist()) for r in reader.get_next()}
    finally:
        reader.close()


# ---- truncated files ------------------------------------------------------------------------


def test_opencv_decodes_a_truncated_jpeg_so_the_end_marker_is_checked(tmp_path):
    from nasfpn.data.image_files import TruncatedImageError, read_image_file, truncation_reason

    whole = encoded_image(1)
    half = whole[: len(whole) // 2]
    # The reason for the check: OpenCV returns a full-size image for the first half of a JPEG.
    assert cv2.imdecode(np.frombuffer(half, np.uint8), cv2.IMREAD_COLOR).shape == (SIDE, SIDE, 3)
    assert truncation_reason(whole) is None
    assert truncation_reason(whole + b"\x00" * 16) is None  # padding after the end marker is fine
    assert "truncated JPEG" in truncation_reason(half)
    with pytest.raises(TruncatedImageError, match=r"half\.jpg: truncated JPEG"):
        read_image_file(write(tmp_path / "half.jpg", half))
    for ext in (".png", ".bmp"):
        whole = encoded_image(2, ext)
        assert truncation_reason(whole) is None
        assert truncation_reason(whole[:-20]).startswith(f"truncated {ext[1:].upper()}")


# ---- conversion -----------------------------------------------------------------------------


@pytest.fixture()
def coco_folder(tmp_path):
    """5 images listed 6 times: a1 twice under one id, a2 under a second id; a4 truncated."""
    images = tmp_path / "img"
    images.mkdir()
    data = {name: encoded_image(i) for i, name in enumerate(["a0.jpg", "a1.jpg", "a2.jpg", "a3.jpg"])}
    for name, blob in data.items():
        write(images / name, blob)
    whole = encoded_image(9)
    write(images / "a4.jpg", whole[: len(whole) // 2])
    entries = [
        (10, "a0.jpg"),
        (11, "a1.jpg"),
        (11, "a1.jpg"),
        (12, "a2.jpg"),
        (13, "a2.jpg"),
        (14, "a3.jpg"),
        (15, "a4.jpg"),
    ]
    ids = sorted({i for i, _ in entries})
    coco = {
        "images": [{"id": i, "file_name": n, "height": SIDE, "width": SIDE} for i, n in entries],
        "annotations": [
            {"id": k + 1, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20]} for k, i in enumerate(ids)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    return images, coco, data


def save_json(path, obj, bom=False):
    text = json.dumps(obj)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8") as f:
        f.write(text)
    return str(path)


def test_conversion_skips_truncated_and_duplicate_images_and_reads_a_bom(coco_folder, tmp_path, capsys):
    import create_data

    images, coco, data = coco_folder
    anno = save_json(tmp_path / "anno.json", coco, bom=True)  # no iscrowd/area: a labelling tool's file
    first = create_data.main(
        [
            "--create_dataset=coco",
            f"--anno_path={anno}",
            f"--image_dir={images}",
            f"--mindrecord_dir={tmp_path / 'mr'}",
            "--num_classes=2",
            "--num_shards=2",
        ]
    )
    out = capsys.readouterr().out
    assert "images written: 4" in out
    assert "truncated image file: 1 (a4.jpg)" in out
    assert "duplicate image (id listed before): 1 (a1.jpg)" in out
    assert "duplicate image (file listed before): 1 (a2.jpg)" in out
    records = read_mindrecord(first)
    assert sorted(records) == [10, 11, 12, 14]  # each image once, under its first id
    for img_id, name in ((10, "a0.jpg"), (11, "a1.jpg"), (12, "a2.jpg"), (14, "a3.jpg")):
        assert records[img_id][0] == data[name]  # the file's bytes as stored
        assert records[img_id][1] == [[4, 4, 24, 24, 1]]
    assert sorted(os.listdir(tmp_path / "mr")) == [
        "retinanet.mindrecord.dataset.json",  # the dataset record (nasfpn/data/dataset_record.py)
        "retinanet.mindrecord0",
        "retinanet.mindrecord0.db",
        "retinanet.mindrecord1",
        "retinanet.mindrecord1.db",
    ]


def test_text_list_with_a_bom_finds_its_first_file(tmp_path):
    from nasfpn.data.converters import Summary, text_samples, write_mindrecord

    write(tmp_path / "first.jpg", encoded_image(3))
    write(tmp_path / "second.jpg", encoded_image(4))
    listing = tmp_path / "list.txt"
    listing.write_text(
        "first.jpg 1,2,30,40,1\nsecond.jpg 5,5,20,20,2\nfirst.jpg 1,1,9,9,1\n", encoding="utf-8-sig"
    )
    summary = Summary()
    first, summary = write_mindrecord(
        text_samples(str(listing), str(tmp_path), 3, summary),
        str(tmp_path / "mr"),
        "t.mr",
        num_shards=1,
        summary=summary,
        progress=False,
    )
    assert summary.written == 2 and "missing image file" not in summary.skipped_images
    assert summary.skipped_images["duplicate image (file listed before)"] == 1
    records = read_mindrecord(first)
    assert records[0][1] == [[2, 1, 40, 30, 1]] and records[1][1] == [[5, 5, 20, 20, 2]]


@pytest.mark.parametrize("bad_id", [2**31, -(2**31) - 1, "12"])
def test_an_id_the_int32_column_cannot_hold_is_refused_naming_the_file(coco_folder, tmp_path, bad_id):
    import create_data
    from nasfpn.data.converters import ConversionError
    from nasfpn.data.coco_format import AnnotationError

    images, coco, _ = coco_folder
    coco["images"][3]["id"] = bad_id
    anno = save_json(tmp_path / "anno.json", coco)
    expected = AnnotationError if isinstance(bad_id, str) else ConversionError
    message = (
        r"images\[3\]: id must be an integer, got '12'"
        if isinstance(bad_id, str)
        else rf"image 'a2.jpg' has id {bad_id}; the MindRecord stores ids as int32"
    )
    with pytest.raises(expected, match=message) as info:
        create_data.main(
            [
                "--create_dataset=coco",
                f"--anno_path={anno}",
                f"--image_dir={images}",
                f"--mindrecord_dir={tmp_path / 'mr'}",
                "--num_classes=2",
            ]
        )
    assert anno in str(info.value)
    assert not (tmp_path / "mr").exists() or os.listdir(tmp_path / "mr") == []  # refused before writing


def test_a_held_lock_makes_a_second_conversion_refuse(coco_folder, tmp_path):
    from nasfpn.data.converters import output_lock

    images, coco, _ = coco_folder
    anno = save_json(tmp_path / "anno.json", coco)
    out = tmp_path / "mr"
    out.mkdir()
    with output_lock(str(out), "retinanet.mindrecord"):
        run = run_script(
            "create_data.py",
            [
                "--create_dataset=coco",
                f"--anno_path={anno}",
                f"--image_dir={images}",
                f"--mindrecord_dir={out}",
                "--num_classes=2",
            ],
            tmp_path,
        )
        assert_one_line_error(
            run, 2, f"another conversion (pid {os.getpid()}) is writing 'retinanet.mindrecord'"
        )
        assert os.listdir(out) == [".retinanet.mindrecord.lock"]  # only the held lock
    assert os.listdir(out) == []  # the lock file goes with the lock


def _text_set(folder, names, seed):
    """A text-format list of `names` (each a distinct random image) in `folder`."""
    folder.mkdir()
    for i, name in enumerate(names):
        write(folder / name, encoded_image(seed + i))
    listing = folder / "list.txt"
    listing.write_text("".join(f"{n} 2,2,30,30,1\n" for n in names))
    return str(listing)


@pytest.mark.slow
def test_two_concurrent_conversions_into_one_output_leave_one_complete_run(tmp_path):
    out = tmp_path / "mr"
    runs = []
    for tag, count in (("a", 120), ("b", 90)):
        listing = _text_set(tmp_path / tag, [f"{tag}{i}.jpg" for i in range(count)], seed=len(runs) * 1000)
        runs.append(
            (
                tag,
                count,
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.join(REPO_ROOT, "create_data.py"),
                        "--create_dataset=other",
                        f"--image_dir={tmp_path / tag}",
                        f"--anno_path={listing}",
                        f"--mindrecord_dir={out}",
                        "--num_classes=2",
                        "--num_shards=3",
                    ],
                    cwd=str(tmp_path),
                    env=ENV,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    finished = []
    for tag, count, proc in runs:
        stdout, stderr = proc.communicate(timeout=300)
        finished.append((tag, count, proc.returncode, stdout, stderr))
    statuses = sorted(rc for _, _, rc, _, _ in finished)
    assert statuses == [0, 2], [f[3:] for f in finished]
    winner = next(f for f in finished if f[2] == 0)
    loser = next(f for f in finished if f[2] == 2)
    assert "another conversion" in loser[4] or "already exists" in loser[4], loser[4]
    records = read_mindrecord(str(out / "retinanet.mindrecord0"))
    assert len(records) == winner[1]  # the winner's images, all of them, none of the other run's
    with open(tmp_path / winner[0] / f"{winner[0]}0.jpg", "rb") as f:
        assert records[0][0] == f.read()
    assert sorted(os.listdir(out)) == sorted(
        [f"retinanet.mindrecord{i}{ext}" for i in range(3) for ext in ("", ".db")]
        + ["retinanet.mindrecord.dataset.json"]  # the winner's dataset record
    )


@pytest.mark.slow
def test_a_killed_conversion_is_cleaned_up_by_the_next_run(tmp_path):
    names = [f"k{i}.jpg" for i in range(1500)]
    folder = tmp_path / "imgs"
    folder.mkdir()
    source = write(tmp_path / "source.jpg", encoded_image(5, side=160))
    for name in names:  # hard links: distinct files (not duplicates) without the disk space
        os.link(source, folder / name)
    listing = folder / "list.txt"
    listing.write_text("".join(f"{n} 2,2,30,30,1\n" for n in names))
    out = tmp_path / "mr"
    args = [
        sys.executable,
        os.path.join(REPO_ROOT, "create_data.py"),
        "--create_dataset=other",
        f"--image_dir={folder}",
        f"--anno_path={listing}",
        f"--mindrecord_dir={out}",
        "--num_classes=2",
        "--num_shards=2",
    ]
    proc = subprocess.Popen(
        args, cwd=str(tmp_path), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not glob.glob(str(out / ".retinanet.mindrecord.tmp-*")) and time.time() < deadline:
        assert proc.poll() is None, "the conversion ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stale = glob.glob(str(out / ".retinanet.mindrecord.tmp-*"))
    assert len(stale) == 1  # what a killed run leaves: its temporary folder (and a lock file)
    assert not glob.glob(str(out / "retinanet.mindrecord*"))  # nothing under the final names
    run = subprocess.run(args, cwd=str(tmp_path), env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"removed {stale[0]}, the temporary folder of an interrupted conversion" in run.stdout
    assert sorted(os.listdir(out)) == [
        "retinanet.mindrecord.dataset.json",  # the dataset record, written after the shards
        "retinanet.mindrecord0",
        "retinanet.mindrecord0.db",
        "retinanet.mindrecord1",
        "retinanet.mindrecord1.db",
    ]
    records = read_mindrecord(str(out / "retinanet.mindrecord0"))
    assert sorted(records) == list(range(len(names)))


# ---- annotation files -----------------------------------------------------------------------

GOOD_COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "height": 64, "width": 64}],
    "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
    "categories": [{"id": 1, "name": "thing"}],
}


def _damaged(change):
    coco = copy.deepcopy(GOOD_COCO)
    change(coco)
    return coco


@pytest.mark.parametrize(
    "content, message",
    [
        (
            [GOOD_COCO],
            r"expected a JSON object with 'images', 'annotations' and 'categories' lists, got a list",
        ),
        ({"images": [], "categories": {}}, r"expected a COCO file with a 'categories' list"),
        (
            _damaged(lambda c: c["annotations"][0].pop("bbox")),
            r"annotation id 7 \(annotations\[0\]\) lacks bbox",
        ),
        (
            _damaged(lambda c: c["annotations"][0].pop("id")),
            r"annotations\[0\] lacks id \(a COCO annotation needs",
        ),
        (_damaged(lambda c: c["images"][0].pop("file_name")), r"image id 1 \(images\[0\]\) lacks file_name"),
        (
            _damaged(lambda c: c["annotations"][0].update(bbox=[1, 2, 3])),
            r"annotation id 7 \(annotations\[0\]\): bbox must be 4 numbers \[x, y, width, height\], got \[1, 2, 3\]",
        ),
        (
            _damaged(lambda c: c["annotations"][0].update(bbox="1,2,3,4")),
            r"annotation id 7 \(annotations\[0\]\): bbox must be 4 numbers .*got '1,2,3,4'",
        ),
        (_damaged(lambda c: c["annotations"][0].update(bbox=[1, 2, None, 4])), r"bbox must be 4 numbers"),
    ],
)
def test_bad_annotation_files_name_the_file_and_the_entry(tmp_path, content, message):
    from nasfpn.data.coco_format import AnnotationError, load_coco_json

    path = save_json(tmp_path / "bad.json", content)
    with pytest.raises(AnnotationError, match=message) as info:
        load_coco_json(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_iscrowd_and_area_are_filled_and_a_bom_is_read(tmp_path):
    from nasfpn.data.coco_format import load_coco_json

    coco = load_coco_json(save_json(tmp_path / "bom.json", GOOD_COCO, bom=True))
    assert coco["annotations"][0]["iscrowd"] == 0 and coco["annotations"][0]["area"] == 12.0
    given = _damaged(lambda c: c["annotations"][0].update(iscrowd=1, area=5.5))
    coco = load_coco_json(save_json(tmp_path / "given.json", given))
    assert coco["annotations"][0]["iscrowd"] == 1 and coco["annotations"][0]["area"] == 5.5


def test_bad_annotation_json_through_create_data_is_one_line_exit_2(tmp_path):
    path = save_json(tmp_path / "list.json", [GOOD_COCO])
    (tmp_path / "img").mkdir()
    run = run_script(
        "create_data.py",
        [
            "--create_dataset=coco",
            f"--anno_path={path}",
            f"--image_dir={tmp_path / 'img'}",
            f"--mindrecord_dir={tmp_path / 'mr'}",
        ],
        tmp_path,
    )
    assert_one_line_error(run, 2, str(path), "got a list")
    assert not (tmp_path / "mr").exists()


# ---- evaluation -----------------------------------------------------------------------------


def _strip_iscrowd_and_area(path, out_path):
    with open(path) as f:
        coco = json.load(f)
    for ann in coco["annotations"]:
        ann.pop("iscrowd", None)
        ann.pop("area", None)
    return save_json(out_path, coco)


def test_evaluation_on_a_file_without_iscrowd_and_area(tmp_path):
    """Detections equal to the ground truth give AP 1 (pycocotools would raise KeyError on the file
    as written: it reads 'iscrowd' and 'area' of every annotation)."""
    from nasfpn.evaluation.scoring import DetectionCollector

    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 100, "width": 100} for i in (1, 2)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 30]},
            {"id": 2, "image_id": 2, "category_id": 5, "bbox": [50, 20, 30, 60]},
        ],
        "categories": [{"id": 3, "name": "x"}, {"id": 5, "name": "y"}],
    }
    path = save_json(tmp_path / "no_iscrowd.json", coco)
    collector = DetectionCollector(path, num_classes=3)
    collector.detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in coco["annotations"]
    ]
    collector.image_ids = [1, 2]
    stats = collector.evaluate(str(tmp_path / "out"))
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    with open(tmp_path / "out" / "metrics.json") as f:
        assert json.load(f)["AP"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory):
    """The embedded set (4 val images) converted to an eval MindRecord, and a TINY checkpoint."""
    import mindspore as ms
    import create_data
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.inference.build import build_inference_network

    work = tmp_path_factory.mktemp("faults_eval")
    root = generate_embedded_dataset(str(work / "shapes"), num_train=1, num_val=4, size=96, seed=8)
    create_data.main(
        [
            "--create_dataset=coco",
            f"--coco_root={root}",
            "--is_training=false",
            f"--mindrecord_dir={work / 'mr'}",
            "--num_shards=1",
            "--num_classes=4",
        ]
    )
    ms.set_seed(2)
    ckpt = save_checkpoint_atomic(build_inference_network(make_config(*ARGS)), str(work / "tiny.ckpt"))
    return {
        "root": root,
        "mr": str(work / "mr"),
        "ckpt": ckpt,
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
    }


def test_wrong_anno_path_is_refused_before_inference(eval_set, tmp_path):
    import eval as eval_script
    from nasfpn.data.dataset_record import DatasetRecordError

    with open(eval_set["anno"]) as f:
        coco = json.load(f)
    known = sorted(image["id"] for image in coco["images"])
    coco["images"] = coco["images"][:1]  # another file: only one of the four images
    other = save_json(tmp_path / "other.json", coco)
    # The checkpoint does not exist: the annotation check must come before it is even opened.
    # the MindRecord's dataset record lists its images: the override is checked against it
    with pytest.raises(
        DatasetRecordError,
        match=rf"{other} does not describe the images of .*retinanet_eval.mindrecord \(3 of 4 differ: "
        rf"image id {known[1]} \(.*\) is not in it; image id {known[2]} .* is not in it; image id {known[3]} ",
    ):
        eval_script.main(
            [
                *ARGS,
                f"--checkpoint_path={tmp_path / 'absent.ckpt'}",
                f"--mindrecord_dir={eval_set['mr']}",
                f"--anno_path={other}",
                f"--eval_output_dir={tmp_path / 'out'}",
            ]
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_eval_py_on_an_annotation_file_without_iscrowd_and_area(eval_set, tmp_path):
    stripped = _strip_iscrowd_and_area(eval_set["anno"], tmp_path / "stripped.json")
    runs = {}
    for name, anno in (("given", eval_set["anno"]), ("stripped", stripped)):
        run = run_script(
            "eval.py",
            [
                *ARGS,
                f"--checkpoint_path={eval_set['ckpt']}",
                f"--mindrecord_dir={eval_set['mr']}",
                f"--anno_path={anno}",
                f"--eval_output_dir={tmp_path / name}",
            ],
            tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        with open(tmp_path / name / "metrics.json") as f:
            runs[name] = json.load(f)
    # The embedded set's area is the box area, so filling it from the bbox changes nothing.
    for key in ("AP", "AP50", "APs", "APm", "APl", "AR100"):
        assert runs["stripped"][key] == pytest.approx(runs["given"][key], abs=1e-9)
    assert runs["stripped"]["num_images"] == 4


# ---- exported models ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A TINY network exported at 128x128 to MINDIR and ONNX, plus corrupt copies."""
    import mindspore as ms
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network

    folder = tmp_path_factory.mktemp("exported")
    ms.set_seed(4)
    net = build_inference_network(make_config(*ARGS))
    models = {
        fmt: export_network(net, str(folder / "tiny"), fmt, 1, (128, 128)) for fmt in ("MINDIR", "ONNX")
    }
    for fmt, path in list(models.items()):
        with open(path, "rb") as f:
            head = f.read(4096)
        models[f"corrupt {fmt}"] = write(folder / f"corrupt{os.path.splitext(path)[1]}", head)
    return models


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_a_model_run_at_another_img_shape_names_the_shape_to_use(exported, fmt):
    from nasfpn.inference.runtimes import ModelFileError, check_runtime_input, open_runtime

    runtime = open_runtime(exported[fmt])
    assert list(runtime.input_shape) == [1, 3, 128, 128]
    message = rf"{exported[fmt]} takes input \[1, 3, 128, 128\] but was given \[1, 3, 256, 256\]: run with --img_shape=\[128,128\]"
    with pytest.raises(ModelFileError, match=message):
        check_runtime_input(runtime, (256, 256))
    with pytest.raises(ModelFileError, match=message):
        runtime(np.zeros((1, 3, 256, 256), np.float32))
    boxes, scores = runtime(np.zeros((1, 3, 128, 128), np.float32))  # the right size still runs
    assert boxes.shape[-1] == 4 and scores.shape[-1] == 4


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_a_corrupt_model_file_is_a_user_error_naming_it(exported, fmt):
    from nasfpn.inference.runtimes import ModelFileError, open_runtime

    path = exported[f"corrupt {fmt}"]
    with pytest.raises(ModelFileError, match=rf"^{path}: "):
        open_runtime(path)


# ---- infer.py and the 310 twin with a truncated image ---------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three good embedded-set images and a truncated copy of a fourth, with their annotations."""
    from nasfpn.data.embedded import generate_embedded_dataset

    root = generate_embedded_dataset(
        str(tmp_path_factory.mktemp("infer_faults") / "shapes"), num_train=1, num_val=4, size=96, seed=12
    )
    folder = os.path.join(root, "val2017")
    names = sorted(os.listdir(folder))
    cut = os.path.join(folder, names[-1])
    with open(cut, "rb") as f:
        data = f.read()
    write(cut, data[: len(data) // 2])
    return {
        "folder": folder,
        "good": names[:-1],
        "cut": names[-1],
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
    }


@pytest.mark.slow
def test_infer_skips_a_truncated_image_writes_the_others_and_exits_3(exported, image_folder, tmp_path):
    run = run_script(
        "infer.py",
        [
            *ARGS,
            f"--image={image_folder['folder']}",
            f"--model_path={exported['ONNX']}",
            "--score_threshold=0",
            f"--anno_path={image_folder['anno']}",
            f"--output_dir={tmp_path / 'out'}",
        ],
        tmp_path,
    )
    assert run.returncode == 3, run.stderr[-3000:]
    assert (
        f"skipped {os.path.join(image_folder['folder'], image_folder['cut'])}: truncated JPEG" in run.stderr
    )
    assert "1 of 4 images skipped" in run.stderr
    with open(tmp_path / "out" / "detections.json") as f:
        detections = json.load(f)
    # A fresh head scores every anchor ~0.5 > min_score: every decodable image has detections.
    assert sorted({d["file_name"] for d in detections}) == image_folder["good"]
    stems = [os.path.splitext(n)[0] for n in image_folder["good"]]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        [f"{s}_det.jpg" for s in stems] + ["detections.json"]
    )


@pytest.mark.slow
def test_infer_with_a_wrong_img_shape_or_a_corrupt_model_is_exit_2_before_any_output(
    exported, image_folder, tmp_path
):
    common = [
        f"--image={image_folder['folder']}",
        f"--anno_path={image_folder['anno']}",
        f"--output_dir={tmp_path / 'out'}",
    ]
    run = run_script(
        "infer.py", [*ARGS, "--img_shape=[256,256]", f"--model_path={exported['MINDIR']}", *common], tmp_path
    )
    assert_one_line_error(run, 2, exported["MINDIR"], "run with --img_shape=[128,128]")
    run = run_script("infer.py", [*ARGS, f"--model_path={exported['corrupt ONNX']}", *common], tmp_path)
    assert_one_line_error(run, 2, exported["corrupt ONNX"], "ONNX Runtime cannot load this model")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_310_twin_skips_a_truncated_image_and_postprocess_leaves_it_out(
    exported, image_folder, tmp_path, monkeypatch
):
    import infer_310_twin
    import postprocess
    from nasfpn.deploy.app310_twin import SKIPPED_FILE

    monkeypatch.chdir(tmp_path)
    summary = infer_310_twin.main(
        [*ARGS, f"--model_path={exported['ONNX']}", f"--dataset_path={image_folder['folder']}"]
    )
    assert summary["count"] == 3 and infer_310_twin.exit_status(summary) == 3
    assert [os.path.basename(p) for p, _ in summary["skipped"]] == [image_folder["cut"]]
    stems = [os.path.splitext(n)[0] for n in image_folder["good"]]
    assert sorted(os.listdir(tmp_path / "result_Files")) == sorted(
        [f"{s}_{i}.bin" for s in stems for i in (0, 1)] + [SKIPPED_FILE]
    )
    listed = (tmp_path / "result_Files" / SKIPPED_FILE).read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(f"{image_folder['cut']}\t")
    assert "truncated JPEG" in listed[0]
    assert (tmp_path / "time_Result" / "test_perform_static.txt").read_text().split()[-1] == "3"
    stats = postprocess.main(
        [
            *ARGS,
            f"--result_path={tmp_path / 'result_Files'}",
            f"--dataset_path={image_folder['folder']}",
            f"--anno_path={image_folder['anno']}",
            f"--eval_output_dir={tmp_path / 'eval'}",
        ]
    )
    assert stats["skipped_images"] == [image_folder["cut"]] and postprocess.exit_status(stats) == 3
    with open(tmp_path / "eval" / "metrics.json") as f:
        assert json.load(f)["num_images"] == 3


# ---- the error policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raised, status, traceback",
    [
        ("UserError('bad.json: expected a list')", 2, False),
        ("UserFileNotFoundError('x.jpg: not found')", 2, False),
        ("RunError('loss became nan')", 1, False),
        ("ValueError('a bug')", 1, True),
        ("OSError('a bug too')", 1, True),
    ],
)
def test_run_entry_point_exit_statuses(raised, status, traceback):
    code = (
        "from nasfpn.core.exits import run_entry_point\n"
        "from nasfpn.core.errors import RunError, UserError, UserFileNotFoundError\n"
        f"def main():\n    raise {raised}\n"
        "run_entry_point(main)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == status
    assert ("Traceback" in run.stderr) == traceback, run.stderr
    if not traceback:
        assert run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1


def test_exit_status_3_comes_from_the_entry_points_own_rule():
    code = (
        "from nasfpn.core.exits import run_entry_point\n"
        "run_entry_point(lambda: ['skipped.jpg'], lambda skipped: 3 if skipped else 0)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 3 and run.stderr == ""
