"""Outputs of eval / infer / export / the 310 twin / postprocess / create_data: one writer per
folder, storage faults as one-line user errors, and inputs that do not fit what reads them.

Storage faults are real: tmpfs mounts made for the test (a read-only one, a full one). Where this
machine does not allow mounting, those tests are skipped and say why. Each test checks the files
left behind (no temporaries, the user's files intact), not only the error.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, TINY, make_config
from tests.helpers.cli import assert_one_line_error, run_script

ARGS = (*TINY, "--num_classes=4")  # the embedded set: 3 shapes + background


def snapshot(folder):
    """name -> bytes of every file under `folder` (what must stay as it was)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


# ---- real file-system faults ----------------------------------------------------------------


@pytest.fixture()
def tmpfs(tmp_path):
    """mount(name, size, read_only=False, files=None) -> a fresh tmpfs under tmp_path holding
    `files` (name -> bytes); read-only ones are remounted so after the files are written."""
    mounted = []

    def mount(name, size="1m", read_only=False, files=None):
        path = tmp_path / name
        path.mkdir()
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
        )
        if run.returncode:
            pytest.skip(
                f"mounting a tmpfs is not permitted here ({run.stderr.strip()}): the "
                "read-only and full-disk faults need one"
            )
        mounted.append(path)
        for file_name, data in (files or {}).items():
            (path / file_name).write_bytes(data)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=False)


def fill(folder):
    """Fill the file system of `folder` (a small tmpfs) with one file, until a write fails
    (unbuffered, so nothing is left to fail again at close)."""
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
        for chunk in (65536, 512):
            with contextlib.suppress(OSError):
                while f.write(b"\0" * chunk):
                    pass
    assert shutil.disk_usage(folder).free == 0


# ---- shared inputs (module scope: one export of each model) ---------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """TINY networks exported at 128x128: a 4-class ONNX (the embedded set's classes) and a
    6-class MINDIR and ONNX (a model of another dataset)."""
    import mindspore as ms
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network

    folder = tmp_path_factory.mktemp("models")
    ms.set_seed(3)
    four = build_inference_network(make_config(*ARGS))
    six = build_inference_network(make_config(*TINY, "--num_classes=6"))
    return {
        "onnx4": export_network(four, str(folder / "four"), "ONNX", 1, (128, 128)),
        "onnx6": export_network(six, str(folder / "six"), "ONNX", 1, (128, 128)),
        "mindir6": export_network(six, str(folder / "six"), "MINDIR", 1, (128, 128)),
        "net4": four,
    }


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The embedded set (4 val images of 96x96) and its eval MindRecord."""
    import create_data
    from nasfpn.data.embedded import generate_embedded_dataset

    work = tmp_path_factory.mktemp("shapes")
    root = generate_embedded_dataset(str(work / "shapes"), num_train=1, num_val=4, size=96, seed=21)
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
    images = os.path.join(root, "val2017")
    return {
        "root": root,
        "mr": str(work / "mr"),
        "images": images,
        "names": sorted(os.listdir(images)),
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
    }


def infer_args(shapes, model, out, *extra):
    return [
        *ARGS,
        f"--image={shapes['images']}",
        f"--model_path={model}",
        f"--output_dir={out}",
        f"--anno_path={shapes['anno']}",
        "--score_threshold=0",
        *extra,
    ]


def eval_args(shapes, out, model="--checkpoint_path=absent.ckpt", *extra):
    return [
        *ARGS,
        model,
        f"--mindrecord_dir={shapes['mr']}",
        f"--coco_root={shapes['root']}",
        f"--eval_output_dir={out}",
        *extra,
    ]


# ---- one writer per output folder -----------------------------------------------------------


@pytest.mark.slow
def test_a_second_infer_into_a_used_folder_is_refused_and_the_first_results_stay(models, shapes, tmp_path):
    import infer

    out = tmp_path / "out"
    first = infer.main(infer_args(shapes, models["onnx4"], out))
    before = snapshot(out)
    stems = [os.path.splitext(n)[0] for n in shapes["names"]]
    assert sorted(before) == sorted([f"{s}_det.jpg" for s in stems] + ["detections.json"])
    assert len(json.loads(before["detections.json"])) == len(first.results) > 0
    # A second run (another image, a real process) into the same folder: refused, nothing touched.
    one_image = os.path.join(shapes["images"], shapes["names"][0])
    run = run_script(
        "infer.py",
        [],
        [*infer_args(shapes, models["onnx4"], out)[:-1], f"--image={one_image}", "--score_threshold=0.9"],
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        run,
        2,
        f"--output_dir={out} already holds another run's results",
        "give a fresh --output_dir or pass --overwrite=True",
    )
    assert snapshot(out) == before
    (out / "notes.txt").write_text("mine")  # not a run's output: carried into the replacing folder
    # Asked to: the earlier results are replaced, none of them left mixed with the new ones.
    infer.main(
        [
            *infer_args(shapes, models["onnx4"], out)[:-1],
            f"--image={one_image}",
            "--score_threshold=0.9",
            "--overwrite=True",
        ]
    )
    assert sorted(os.listdir(out)) == sorted([f"{stems[0]}_det.jpg", "detections.json", "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"
    detections = json.loads((out / "detections.json").read_text())
    assert all(d["score"] >= 0.9 for d in detections)


def test_a_run_while_another_process_writes_the_folder_is_refused_naming_its_pid(shapes, tmp_path):
    """The models named do not exist: the folder is claimed before any model is opened."""
    import infer
    import infer_310_twin
    from nasfpn.core.storage import OUTPUT_LOCK_NAME, OutputInUseError

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    # The first run is a real process holding the folder's lock (as a running infer.py does).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from nasfpn.core.storage import output_folder_lock\n"
            f"with output_folder_lock({str(out)!r}, 'output_dir'):\n print('held', flush=True); sys.stdin.read()",
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            OutputInUseError,
            match=rf"--output_dir={out}: another run \(pid {holder.pid}\) "
            r"is writing there now .*give another --output_dir",
        ):
            infer.main(infer_args(shapes, "absent.onnx", out))
        with pytest.raises(OutputInUseError, match=rf"--result_path={out}: another run \(pid {holder.pid}\)"):
            infer_310_twin.main(
                [
                    *ARGS,
                    "--model_path=absent.onnx",
                    f"--dataset_path={shapes['images']}",
                    f"--result_path={out}",
                ]
            )
        assert sorted(os.listdir(out)) == [OUTPUT_LOCK_NAME, "notes.txt"]
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert sorted(os.listdir(out)) == ["notes.txt"]  # the lock goes with its holder


def test_eval_and_postprocess_refuse_an_output_folder_with_earlier_results(shapes, tmp_path):
    import eval as eval_script
    import postprocess
    from nasfpn.core.errors import UserFileExistsError
    from nasfpn.core.storage import output_folder_lock, OutputInUseError

    out = tmp_path / "used"
    out.mkdir()
    (out / "metrics.json").write_text('{"AP": 0.5}')
    # Refused first of all: the checkpoint does not even exist.
    with pytest.raises(
        UserFileExistsError,
        match=rf"--eval_output_dir={out} already holds another run's "
        r"results \(1 file\(s\): metrics.json\)",
    ):
        eval_script.main(eval_args(shapes, out))
    with pytest.raises(UserFileExistsError, match=rf"--eval_output_dir={out} already holds"):
        postprocess.main(
            [
                *ARGS,
                f"--result_path={tmp_path}",
                f"--dataset_path={shapes['images']}",
                f"--anno_path={shapes['anno']}",
                f"--eval_output_dir={out}",
            ]
        )
    assert snapshot(out) == {"metrics.json": b'{"AP": 0.5}'}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with output_folder_lock(str(fresh), "eval_output_dir"):  # an evaluation writing there now
        with pytest.raises(
            OutputInUseError, match=rf"--eval_output_dir={fresh}: another run \(pid {os.getpid()}\)"
        ):
            eval_script.main(eval_args(shapes, fresh))
    assert os.listdir(fresh) == []


@pytest.mark.slow
def test_the_310_twin_refuses_a_result_folder_with_bin_files_and_keeps_them(models, shapes, tmp_path):
    import infer_310_twin
    from nasfpn.core.errors import UserFileExistsError

    results = tmp_path / "result_Files"
    twin = [
        *ARGS,
        f"--model_path={models['onnx4']}",
        f"--dataset_path={shapes['images']}",
        f"--result_path={results}",
    ]
    assert infer_310_twin.main(twin)["count"] == 4
    before, times = snapshot(results), snapshot(tmp_path / "time_Result")
    assert len(before) == 8
    with pytest.raises(
        UserFileExistsError,
        match=rf"--result_path={results} already holds another run's "
        r"results \(8 file\(s\): .*_0.bin",
    ):
        infer_310_twin.main(twin)
    assert snapshot(results) == before and snapshot(tmp_path / "time_Result") == times
    assert infer_310_twin.main([*twin, "--overwrite=True"])["count"] == 4
    assert sorted(snapshot(results)) == sorted(before)


# ---- storage faults -------------------------------------------------------------------------


def _entry_point_runs(shapes, path):
    """(entry point, argv) writing into `path` for each consumer of an output folder or file. The
    models named do not exist: each check must come before the model is opened."""
    return {
        "eval": ("eval", eval_args(shapes, path)),
        "infer": ("infer", infer_args(shapes, "absent.onnx", path)),
        "export": ("export", [*ARGS, f"--file_name={path}/model", "--file_format=MINDIR"]),
        "create_data": (
            "create_data",
            [
                *ARGS,
                "--create_dataset=coco",
                f"--coco_root={shapes['root']}",
                "--is_training=false",
                f"--mindrecord_dir={path}/mr",
            ],
        ),
        "postprocess": (
            "postprocess",
            [
                *ARGS,
                f"--result_path={path}",
                f"--dataset_path={shapes['images']}",
                f"--anno_path={shapes['anno']}",
                f"--eval_output_dir={path}/eval",
            ],
        ),
    }


def _main(module):
    return __import__(module).main


@pytest.mark.parametrize("consumer", ["eval", "infer", "export", "create_data", "postprocess"])
def test_a_read_only_output_is_refused_before_the_work_naming_it(consumer, shapes, tmpfs):
    from nasfpn.core.storage import StorageError

    folder = tmpfs("ro", read_only=True, files={"keep.txt": b"user data"})
    module, argv = _entry_point_runs(shapes, folder)[consumer]
    if consumer == "postprocess":  # its inputs are read from the read-only folder: fine
        argv = [a.replace(f"--eval_output_dir={folder}/eval", f"--eval_output_dir={folder}") for a in argv]
    with pytest.raises(
        StorageError,
        match=rf"{folder}.*: cannot write the .* there \(the file system is read-only\); "
        "give a writable path",
    ):
        _main(module)(argv)
    assert snapshot(folder) == {"keep.txt": b"user data"}


@pytest.mark.parametrize("consumer", ["eval", "infer", "create_data", "postprocess"])
def test_an_output_folder_that_is_a_file_is_refused_and_the_file_kept(consumer, shapes, tmp_path):
    from nasfpn.core.storage import StorageError

    user_file = tmp_path / "taken"
    user_file.write_bytes(b"user data")
    module, argv = _entry_point_runs(shapes, tmp_path)[consumer]
    option = {
        "eval": "eval_output_dir",
        "infer": "output_dir",
        "create_data": "mindrecord_dir",
        "postprocess": "eval_output_dir",
    }[consumer]
    argv = [a for a in argv if not a.startswith(f"--{option}=")] + [f"--{option}={user_file}"]
    with pytest.raises(StorageError, match=rf"--{option}={user_file}: is a file, expected a folder"):
        _main(module)(argv)
    assert user_file.read_bytes() == b"user data"
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_an_export_onto_a_folder_or_below_a_file_is_refused_before_the_network_is_built(tmp_path):
    import export
    from nasfpn.core.storage import StorageError

    (tmp_path / "model.mindir").mkdir()
    (tmp_path / "model.mindir" / "inside").write_text("mine")
    with pytest.raises(
        StorageError, match=rf"--file_name={tmp_path}/model.mindir: is a folder, expected a file"
    ):
        export.main([*ARGS, f"--file_name={tmp_path}/model", "--file_format=MINDIR"])
    (tmp_path / "plain").write_text("mine")
    with pytest.raises(StorageError, match=rf"^{tmp_path}/plain: is a file, expected a folder"):
        export.main([*ARGS, f"--file_name={tmp_path}/plain/model", "--file_format=ONNX"])
    assert snapshot(tmp_path) == {"model.mindir/inside": b"mine", "plain": b"mine"}


@pytest.mark.parametrize("consumer", ["eval", "infer", "export", "create_data"])
def test_a_disk_without_room_for_the_outputs_is_refused_before_the_work(consumer, shapes, tmpfs):
    """The room needed: eval ~12 kB per image, infer the input images' size, export the weights
    (~48 MB for TINY), create_data the images' size: a 1 MiB tmpfs filled to the last block has
    room for none of them."""
    from nasfpn.core.storage import StorageError

    folder = tmpfs("full", size="1m")
    fill(folder)
    before = snapshot(folder)
    module, argv = _entry_point_runs(shapes, folder)[consumer]
    if consumer == "export":
        argv = [a for a in argv if not a.startswith("--checkpoint_path")]
    with pytest.raises(
        StorageError,
        match=r"[\d.]+ MB free, the .* needs about [\d.]+ MB; free "
        "some space or give a path on another disk",
    ):
        _main(module)(argv)
    assert snapshot(folder) == before  # no temporary, no lock file, no empty folder


@pytest.mark.slow
def test_a_disk_that_fills_during_the_write_is_a_storage_error_without_temporaries(models, tmpfs):
    """The checks above run before the work; a disk that fills meanwhile fails the write itself.
    The two writers of a large file, the export and the evaluation results, on a full tmpfs."""
    import mindspore as ms
    from nasfpn.deploy.export import write_model
    from nasfpn.evaluation.scoring import DetectionCollector
    from nasfpn.core.storage import StorageError

    folder = tmpfs("filling", size="8m")  # the TINY MINDIR is ~48 MB
    target = os.path.join(folder, "model.mindir")
    with pytest.raises(
        StorageError,
        match=rf"exporting {folder}/model.mindir: no space left on the device; "
        "free some space",
    ):
        write_model(models["net4"], ms.Tensor(np.zeros((1, 3, 128, 128), np.float32)), target, "MINDIR")
    assert os.listdir(folder) == []
    fill(folder)
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 64, "width": 64}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    anno = os.path.join(os.path.dirname(folder), "anno.json")
    with open(anno, "w") as f:
        json.dump(coco, f)
    collector = DetectionCollector(anno, num_classes=2, coco_classes=["background", "thing"])
    scores = np.array([[0.1, 0.9]] * 3, np.float32)
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.4, 0.4, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9]], np.float32)
    collector.add(1, boxes, scores, (64, 64))
    assert len(collector.detections) == 3  # something to write
    with pytest.raises(
        StorageError, match=rf"writing the results into {folder}: no space left on the device"
    ):
        collector.evaluate(str(folder))
    assert sorted(os.listdir(folder)) == ["filler"]


def test_a_storage_error_through_create_data_is_one_line_exit_2(shapes, tmpfs, tmp_path):
    folder = tmpfs("ro_cli", read_only=True)
    run = run_script(
        "create_data.py",
        ARGS,
        [
            "--create_dataset=coco",
            f"--coco_root={shapes['root']}",
            "--is_training=false",
            f"--mindrecord_dir={folder}/mr",
        ],
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        run,
        2,
        f"--mindrecord_dir={folder}/mr: cannot write the MindRecord folder there (the file system is read-only)",
    )
    assert os.listdir(folder) == []


@pytest.mark.slow
def test_a_killed_exports_temporary_is_removed_by_the_next_export(models, tmp_path):
    from nasfpn.deploy.export import export_network
    from nasfpn.core.storage import temporary_name

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now: what a killed export leaves behind names a dead process
    stale = tmp_path / temporary_name("tiny.mindir", pid=dead.pid)
    stale.mkdir()
    (stale / "model.mindir").write_bytes(b"half a model")
    running = tmp_path / temporary_name("tiny.mindir", pid=os.getppid())  # a live export's: kept
    running.mkdir()
    other = tmp_path / temporary_name("other.mindir", pid=dead.pid)  # another file's: not ours to touch
    other.mkdir()
    path = export_network(models["net4"], str(tmp_path / "tiny"), "MINDIR", 1, (128, 128))
    assert sorted(os.listdir(tmp_path)) == sorted(["tiny.mindir", running.name, other.name])
    assert os.path.getsize(path) > 1_000_000


# ---- inputs that do not fit what reads them -------------------------------------------------


@pytest.mark.slow
def test_an_onnx_model_of_another_class_count_is_refused_before_inference(models, shapes, tmp_path):
    import eval as eval_script
    import infer
    from nasfpn.inference.runtimes import ModelFileError

    message = rf"{models['onnx6']} scores 6 classes \(background included\) but --num_classes is 4"
    with pytest.raises(ModelFileError, match=message):
        eval_script.main(eval_args(shapes, tmp_path / "eval", f"--model_path={models['onnx6']}"))
    with pytest.raises(ModelFileError, match=message):
        infer.main(infer_args(shapes, models["onnx6"], tmp_path / "infer"))
    assert os.listdir(tmp_path) == []  # no output folder left behind


@pytest.mark.slow
def test_a_mindir_of_another_class_count_is_refused_at_its_first_outputs(models, shapes):
    """In-process through the library (eval.py's set_context cannot run again in a process whose
    MindSpore runtime other tests started): the check on the first batch's scores."""
    from nasfpn.data.converters import find_mindrecord
    from nasfpn.data.pipeline import create_eval_dataset
    from nasfpn.evaluation.scoring import DetectionCollector, run_network
    from nasfpn.inference.runtimes import ModelFileError, open_runtime

    cfg = make_config(*ARGS, f"--mindrecord_dir={shapes['mr']}", f"--coco_root={shapes['root']}")
    runtime = open_runtime(models["mindir6"])
    assert runtime.score_columns is None  # a MINDIR does not say before it runs
    collector = DetectionCollector.from_sections(cfg.model, cfg.postprocess, shapes["anno"])
    dataset = create_eval_dataset(
        find_mindrecord(shapes["mr"], "retinanet_eval.mindrecord"),
        cfg.model.img_shape,
        cfg.num_parallel_workers,
    )
    with pytest.raises(
        ModelFileError,
        match=rf"{models['mindir6']} scores 6 classes \(background "
        r"included\) but --num_classes is 4",
    ):
        run_network(runtime, dataset, collector, progress=False, model_name=models["mindir6"])
    assert collector.detections == []  # refused before any detection (and any output) is made


def test_a_yaml_key_given_twice_is_refused_with_both_lines(tmp_path):
    from nasfpn.config.flat import ConfigError, load_config

    path = tmp_path / "mine.yaml"
    path.write_text("lr: 0.1\nepoch_size: 3\n# a comment\nlr: 0.2\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{path} line 4: key 'lr' is given twice \(first on line 1\); "
        "keep one of them$",
    ):
        load_config([f"--config_path={path}"])
    nested = tmp_path / "nested.yaml"
    nested.write_text("lr: 0.1\nlog: {level: INFO, level: DEBUG}\n")
    with pytest.raises(ConfigError, match=r"line 2: key 'level' is given twice \(first on line 2\)"):
        load_config([f"--config_path={nested}"])
    merged = tmp_path / "merged.yaml"  # a merge key's values may be overridden: not a repeat
    merged.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  x: 2\n")
    from nasfpn.config.flat import read_yaml

    assert read_yaml(str(merged))[0]["other"] == {"x": 2}


def test_the_default_config_has_no_repeated_key():
    from nasfpn.config.flat import DEFAULT_CONFIG_PATH, read_yaml

    values, help_texts = read_yaml(DEFAULT_CONFIG_PATH)  # would raise on a repeat
    assert values and help_texts


def _twin_results(models, shapes, folder):
    from nasfpn.deploy.app310_twin import run_app
    from nasfpn.inference.runtimes import open_runtime

    run_app(
        open_runtime(models["onnx4"]),
        shapes["images"],
        (128, 128),
        str(folder),
        str(folder) + "_time",
        progress=False,
    )
    return str(folder)


@pytest.mark.slow
def test_postprocess_scales_to_the_decoded_image_and_names_a_contradicting_annotation(
    models, shapes, tmp_path, caplog
):
    import logging
    from nasfpn.deploy.result_files import evaluate_result_files

    results = _twin_results(models, shapes, tmp_path / "result_Files")
    with open(shapes["anno"]) as f:
        coco = json.load(f)
    wrong = json.loads(json.dumps(coco))
    wrong["images"][0]["height"], wrong["images"][0]["width"] = 480, 640  # the file says 480x640
    wrong_path = tmp_path / "wrong.json"
    wrong_path.write_text(json.dumps(wrong))
    outputs = {}
    for name, anno in (("right", shapes["anno"]), ("wrong", str(wrong_path))):
        cfg = make_config(
            *ARGS,
            f"--result_path={results}",
            f"--dataset_path={shapes['images']}",
            f"--anno_path={anno}",
            f"--eval_output_dir={tmp_path / name}",
        )
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            _, collector = evaluate_result_files(cfg, progress=False, log=logging.getLogger("t"))
        outputs[name] = (collector.detections, caplog.text)
    assert outputs["right"][1] == ""
    first = coco["images"][0]
    assert (
        f"1 image(s) decoded at another size than {wrong_path} gives (height x width: id {first['id']}: "
        f"480x640 in the file, {first['height']}x{first['width']} decoded)"
    ) in outputs["wrong"][1]
    # The boxes follow the image the model saw, not the contradicting numbers.
    assert outputs["wrong"][0] == outputs["right"][0]


def test_the_collector_records_sizes_that_contradict_the_annotation_file(tmp_path):
    from nasfpn.evaluation.scoring import DetectionCollector

    coco = {
        "images": [
            {"id": 5, "file_name": "a.jpg", "height": 64, "width": 80},
            {"id": 6, "file_name": "b.jpg", "height": 32, "width": 32},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "thing"}],
    }
    anno = tmp_path / "a.json"
    anno.write_text(json.dumps(coco))
    collector = DetectionCollector(str(anno), 2, coco_classes=["background", "thing"])
    empty = (np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32))
    collector.add(5, *empty, (80, 64))  # transposed: a rotated image, or another file's sizes
    collector.add(6, *empty, (32, 32))
    assert collector.size_mismatches == [(5, (64, 80), (80, 64))]
    assert "id 5: 64x80 in the file, 80x64 decoded" in collector.size_mismatch_warning()


def test_create_data_counts_missing_images_and_annotations_of_unlisted_images(tmp_path, capsys):
    import cv2
    import create_data
    from mindspore.mindrecord import FileReader

    images = tmp_path / "img"
    images.mkdir()
    for name in ("a.jpg", "c.jpg"):
        cv2.imwrite(str(images / name), np.full((64, 64, 3), 128, np.uint8))
    coco = {
        "images": [
            {"id": i, "file_name": n, "height": 64, "width": 64}
            for i, n in ((1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg"), (4, "d.jpg"))
        ],
        "annotations": [
            {"id": k, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20]}
            for k, i in ((10, 1), (11, 2), (12, 3), (13, 4), (14, 9), (15, 9))
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(coco))
    create_data.main(
        [
            "--create_dataset=coco",
            f"--anno_path={anno}",
            f"--image_dir={images}",
            f"--mindrecord_dir={tmp_path / 'mr'}",
            "--num_classes=2",
            "--num_shards=1",
        ]
    )
    summary = capsys.readouterr().out
    assert "images written: 2" in summary
    # a missing image is named by the whole path looked for (nasfpn/data/converters.py:Summary.skip)
    assert f"missing image file: 2 ({images / 'b.jpg'}, {images / 'd.jpg'})" in summary
    assert "annotation of an image id not in 'images': 2 (id 14 -> image 9, id 15 -> image 9)" in summary
    reader = FileReader(str(tmp_path / "mr" / "retinanet.mindrecord"))
    try:
        assert sorted(int(r["img_id"][0]) for r in reader.get_next()) == [1, 3]
    finally:
        reader.close()


def test_a_mindrecord_without_the_columns_evaluation_reads_is_refused_naming_both(tmp_path):
    from mindspore.mindrecord import FileWriter
    from nasfpn.core.errors import UserError
    from nasfpn.evaluation.scoring import mindrecord_image_ids

    path = str(tmp_path / "other")
    writer = FileWriter(path, shard_num=1, overwrite=True)
    writer.add_schema({"img_id": {"type": "int32", "shape": [1]}, "picture": {"type": "bytes"}}, "x")
    writer.write_raw_data([{"img_id": np.array([1], np.int32), "picture": b"abc"}])
    writer.commit()
    with pytest.raises(
        UserError,
        match=rf"^{path}: the evaluation reads the columns image \(bytes\), which "
        r"this MindRecord lacks \(it has img_id \(int32\), picture \(bytes\)\)",
    ):
        mindrecord_image_ids(path)
