"""The ModelArts flow of nasfpn/jobs/modelarts.py (--enable_modelarts=True).

The real ModelArts SDK (`moxing`) exists only on ModelArts machines and copies between OBS and the
job's disk. Here a local stand-in module named `moxing` (written into a temporary folder and put on
sys.path / PYTHONPATH) provides the four calls the flow makes - file.copy_parallel, file.copy,
file.is_directory, file.exists - on local folders standing for OBS, and records each call, so the copies, the
unzip, the path rooting, the upload at the end (also after a failure) and the one-writer-per-server
rule are checked on real files.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
import zipfile

import pytest

from tests.conftest import REPO_ROOT

STAND_IN = '''"""Stand-in for the ModelArts SDK: local copies, each call appended to $MOX_CALLS."""
import json, os, shutil


def _record(name, *args):
    with open(os.environ["MOX_CALLS"], "a") as f:
        f.write(json.dumps([name, *args]) + "\\n")


class file:  # moxing.file
    @staticmethod
    def exists(url):
        return os.path.exists(url)

    @staticmethod
    def is_directory(url):
        return os.path.isdir(url)

    @staticmethod
    def copy_parallel(src, dst):
        _record("copy_parallel", src, dst)
        shutil.copytree(src, dst, dirs_exist_ok=True)

    @staticmethod
    def copy(src, dst):
        _record("copy", src, dst)
        shutil.copyfile(src, dst)
'''


@pytest.fixture
def moxing_stand_in(tmp_path, monkeypatch):
    """The stand-in on sys.path and PYTHONPATH; returns a function listing the recorded calls."""
    folder = tmp_path / "sdk"
    folder.mkdir()
    (folder / "moxing.py").write_text(STAND_IN)
    calls = tmp_path / "mox_calls.jsonl"
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), REPO_ROOT]))
    monkeypatch.setenv("MOX_CALLS", str(calls))
    monkeypatch.setenv("JOB_ID", f"test-{uuid.uuid4().hex}")  # own "done" files per test
    monkeypatch.delitem(sys.modules, "moxing", raising=False)

    def recorded():
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []

    return recorded


def make_obs(tmp_path, zip_layout="folder"):
    """A data_url folder holding MindRecord_COCO.zip (a.txt inside) and a train_url folder."""
    data_url = tmp_path / "obs" / "data"
    data_url.mkdir(parents=True)
    with zipfile.ZipFile(data_url / "MindRecord_COCO.zip", "w") as zf:
        inner = "MindRecord_COCO/a.txt" if zip_layout == "folder" else "a.txt"
        zf.writestr(inner, "shard")
    train_url = tmp_path / "obs" / "train"
    return str(data_url), str(train_url)


def job_args(tmp_path, data_url, train_url, *extra):
    return [
        "--enable_modelarts=True",
        f"--data_url={data_url}",
        f"--train_url={train_url}",
        f"--data_path={tmp_path / 'cache' / 'data'}",
        f"--output_path={tmp_path / 'cache' / 'train'}",
        f"--load_path={tmp_path / 'cache' / 'ckpt'}",
        *extra,
    ]


def test_without_the_sdk_enable_modelarts_is_a_clear_error(tmp_path, monkeypatch):
    from nasfpn.jobs.modelarts import ModelArtsError, modelarts_entry

    monkeypatch.setitem(sys.modules, "moxing", None)  # makes `import moxing` fail, as off ModelArts
    ran = []
    with pytest.raises(
        ModelArtsError,
        match=r"needs the ModelArts SDK \(python module 'moxing'\), "
        r"which exists only on ModelArts",
    ):
        modelarts_entry(ran.append)(["--enable_modelarts=True", f"--data_path={tmp_path}"])
    assert not ran


def test_off_modelarts_nothing_is_copied_or_rewritten(moxing_stand_in):
    from nasfpn.jobs.modelarts import modelarts_entry

    seen = []
    modelarts_entry(seen.append)(["--mindrecord_dir=mr"])
    assert [cfg.mindrecord_dir for cfg in seen] == ["mr"] and moxing_stand_in() == []


def test_the_command_line_is_parsed_once(tmp_path, moxing_stand_in, monkeypatch):
    import nasfpn.jobs.modelarts as modelarts
    from nasfpn.config.flat import load_config

    calls = []
    monkeypatch.setattr(modelarts, "load_config", lambda argv: calls.append(argv) or load_config(argv))
    data_url, train_url = make_obs(tmp_path)
    seen = []
    modelarts.modelarts_entry(seen.append)(
        job_args(tmp_path, data_url, train_url, "--mindrecord_dir=MindRecord_COCO")
    )
    assert len(calls) == 1 and seen[0].mindrecord_dir == str(tmp_path / "cache" / "data" / "MindRecord_COCO")


@pytest.mark.parametrize("zip_layout", ["folder", "contents"])
def test_data_is_copied_unzipped_paths_rooted_and_outputs_uploaded(tmp_path, moxing_stand_in, zip_layout):
    from nasfpn.jobs.modelarts import modelarts_entry

    data_url, train_url = make_obs(tmp_path, zip_layout)
    cache = tmp_path / "cache"

    def main(cfg):
        assert cfg.mindrecord_dir == str(cache / "data" / "MindRecord_COCO")  # relative: data_path
        assert cfg.save_checkpoint_path == str(cache / "train" / "ckpt")  # relative: output_path
        assert cfg.coco_root == "/abs/coco"  # absolute: kept
        with open(os.path.join(cfg.mindrecord_dir, "a.txt")) as f:
            assert f.read() == "shard"
        os.makedirs(cfg.save_checkpoint_path)
        with open(os.path.join(cfg.save_checkpoint_path, "log.txt"), "w") as f:
            f.write("trained")
        return "ok"

    args = job_args(
        tmp_path,
        data_url,
        train_url,
        "--mindrecord_dir=MindRecord_COCO",
        "--save_checkpoint_path=ckpt",
        "--coco_root=/abs/coco",
    )
    assert modelarts_entry(main)(args) == "ok"
    assert [c[0] for c in moxing_stand_in()] == ["copy_parallel", "copy_parallel"]
    assert moxing_stand_in()[0][1:] == [data_url, str(cache / "data")]
    assert (tmp_path / "obs" / "train" / "ckpt" / "log.txt").read_text() == "trained"
    # no half-extracted staging folder is left beside the data
    assert sorted(os.listdir(cache / "data")) == ["MindRecord_COCO", "MindRecord_COCO.zip"]


def test_outputs_are_uploaded_also_when_the_run_fails(tmp_path, moxing_stand_in):
    from nasfpn.core.errors import RunError
    from nasfpn.jobs.modelarts import modelarts_entry

    data_url, train_url = make_obs(tmp_path)

    def failing_main(cfg):
        os.makedirs(cfg.output_path, exist_ok=True)
        with open(os.path.join(cfg.output_path, "train.log"), "w") as f:
            f.write("loss became nan")
        raise RunError("non-finite loss")

    with pytest.raises(RunError, match="non-finite loss"):
        modelarts_entry(failing_main)(job_args(tmp_path, data_url, train_url))
    assert (tmp_path / "obs" / "train" / "train.log").read_text() == "loss became nan"


def test_checkpoint_url_is_copied_to_load_path(tmp_path, moxing_stand_in):
    from nasfpn.jobs.modelarts import modelarts_entry

    data_url, train_url = make_obs(tmp_path)
    ckpt = tmp_path / "obs" / "models" / "retinanet_nasfpn_300-916.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    seen = {}

    def main(cfg):
        seen["path"] = cfg.checkpoint_path
        with open(cfg.checkpoint_path, "rb") as f:
            seen["bytes"] = f.read()

    modelarts_entry(main)(
        job_args(
            tmp_path,
            data_url,
            train_url,
            f"--checkpoint_url={ckpt}",
            "--checkpoint_path=retinanet_nasfpn_300-916.ckpt",
        )
    )
    assert seen == {"path": str(tmp_path / "cache" / "ckpt" / ckpt.name), "bytes": b"weights"}
    assert ["copy", str(ckpt), seen["path"]] in moxing_stand_in()


def test_other_devices_of_a_server_wait_for_the_first_and_copy_nothing(
    tmp_path, moxing_stand_in, monkeypatch
):
    import nasfpn.jobs.modelarts as modelarts

    data_url, train_url = make_obs(tmp_path)
    monkeypatch.setenv("DEVICE_ID", "3")
    monkeypatch.setenv("RANK_SIZE", "8")
    monkeypatch.setattr(modelarts, "WAIT_POLL_SECONDS", 0.05)
    assert not modelarts.is_server_writer(3, 8) and modelarts.is_server_writer(8, 16)
    started = time.monotonic()
    threading.Timer(0.5, modelarts.mark_done, args=("inputs",)).start()  # "device 0" finishing
    modelarts.modelarts_entry(lambda cfg: None)(job_args(tmp_path, data_url, train_url))
    assert time.monotonic() - started >= 0.5
    assert moxing_stand_in() == []  # neither the download nor the upload: device 0 does them


def test_a_missing_zip_names_the_file_and_the_keys(tmp_path, moxing_stand_in):
    from nasfpn.jobs.modelarts import ModelArtsError, modelarts_entry

    data_url, train_url = make_obs(tmp_path)
    with pytest.raises(
        ModelArtsError, match=r"MindRecord\.zip does not exist .*--modelarts_dataset_unzip_name"
    ):
        modelarts_entry(lambda cfg: None)(
            job_args(tmp_path, data_url, train_url, "--modelarts_dataset_unzip_name=MindRecord")
        )


def test_create_data_runs_as_a_modelarts_job(tmp_path, moxing_stand_in):
    """A real entry point in a real process: the COCO set arrives zipped from 'OBS', is unzipped
    and converted."""
    from nasfpn.data.embedded import generate_embedded_dataset

    root = generate_embedded_dataset(str(tmp_path / "coco"), 4, 2, 64, seed=0)
    data_url = tmp_path / "obs" / "data"
    data_url.mkdir(parents=True)
    with zipfile.ZipFile(data_url / "coco.zip", "w") as zf:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                zf.write(path, os.path.join("coco", os.path.relpath(path, root)))
    args = job_args(
        tmp_path,
        data_url,
        tmp_path / "obs" / "train",
        "--modelarts_dataset_unzip_name=coco",
        "--coco_root=coco",
        "--mindrecord_dir=mr",
        "--num_classes=4",
        "--num_shards=1",
    )
    run = subprocess.run(
        [sys.executable, "create_data.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert os.path.isfile(tmp_path / "cache" / "data" / "mr" / "retinanet.mindrecord"), run.stdout
    assert "images written: 4" in run.stdout and "classes: by file order" in run.stdout
