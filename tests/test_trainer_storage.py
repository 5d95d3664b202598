"""Storage faults of training, judged by the files left behind: a read-only / too small /
wrong-kind checkpoint location, broken MindRecords, the folder lock. Real train.py processes, real
file systems (tmpfs mounts; skipped where mounting is not permitted). The tests that need an
uninterrupted reference run (SIGTERM then resume, a second run into the folder, another batch size,
a disk that fills up mid-run) are in test_trainer_faults.py, which has one."""

import json
import os
import shutil
import socket
import subprocess

import pytest

from nasfpn.data.converters import BrokenMindRecordError, check_mindrecord
from nasfpn.core.locks import FolderLockedError, folder_lock, read_holder
from nasfpn.core.storage import StorageError, check_output_dir
from tests.helpers.filesystems import tmpfs
from tests.helpers.tiny_training import SHORT_SCHEDULE, run_train

TRAIN_SHARD = "retinanet.mindrecord0"


@pytest.fixture(scope="module")
def data(tiny_mindrecord):
    return tiny_mindrecord[0]


def _args(data, ckpt):
    return (f"--mindrecord_dir={data}", f"--save_checkpoint_path={ckpt}", "--epoch_size=1", *SHORT_SCHEDULE)


def _files(folder):
    return sorted(os.listdir(folder))


# ---- preemption and concurrent runs (real processes) ---------------------------------------------

# ---- storage faults (real processes, real file systems) ------------------------------------------


@pytest.mark.slow
def test_read_only_checkpoint_folder_is_refused_before_training(repo_root, data, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as read_only:
        run = run_train(repo_root, *_args(data, read_only))
        assert run.returncode == 2, run.stderr[-3000:]
        assert (
            f"error: {read_only}/ckpt_0: cannot write the checkpoint folder there (the file system "
            "is read-only); give a writable path"
        ) in run.stderr
        assert "epoch 1/" not in run.stderr and os.listdir(read_only) == []


@pytest.mark.slow
def test_a_checkpoint_path_that_is_a_file_is_refused_and_left_alone(repo_root, data, tmp_path):
    path = tmp_path / "ckpt"
    path.write_text("mine")
    run = run_train(repo_root, *_args(data, path))
    assert run.returncode == 2, run.stderr[-3000:]
    assert (
        f"error: --save_checkpoint_path={path} is a file; expected a folder (training writes "
        "ckpt_<rank>/ folders into it)"
    ) in run.stderr
    assert path.read_text() == "mine" and _files(tmp_path) == ["ckpt"]


@pytest.mark.slow
def test_a_disk_without_room_for_a_checkpoint_is_refused_before_the_first_step(repo_root, data, tmp_path):
    with tmpfs(tmp_path / "small", "20m") as small:
        run = run_train(repo_root, *_args(data, small))
        assert run.returncode == 2, run.stderr[-3000:]
        assert f"error: {small}/ckpt_0: " in run.stderr
        assert "MB free, the checkpoint folder needs about 9" in run.stderr  # ~92 MB: 2 x 11.5M float32
        assert "epoch 1/" not in run.stderr
        assert _files(small) == ["ckpt_0"] and _files(os.path.join(small, "ckpt_0")) == []


def _broken_copy(data, root, damage):
    broken = os.path.join(root, "mr")
    shutil.copytree(data, broken)
    damage(os.path.join(broken, TRAIN_SHARD))
    return broken


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.mark.slow
def test_a_truncated_mindrecord_given_to_train_py_is_one_line(repo_root, data, tmp_path):
    broken = _broken_copy(data, tmp_path, _truncate)
    run = run_train(repo_root, *_args(broken, tmp_path / "ckpt"))
    assert run.returncode == 2, run.stderr[-3000:]
    shard = os.path.join(broken, TRAIN_SHARD)
    assert f"error: {shard}: truncated ({os.path.getsize(shard)} bytes, its header says " in run.stderr
    assert "Traceback" not in run.stderr and not os.path.exists(tmp_path / "ckpt")


# ---- the checks without training (fast) ----------------------------------------------------------


def test_check_mindrecord_names_a_missing_index_and_a_truncated_shard(data, tmp_path):
    assert check_mindrecord(os.path.join(data, TRAIN_SHARD)) == 8
    no_db = _broken_copy(data, tmp_path / "a", lambda shard: os.remove(shard + ".db"))
    with pytest.raises(
        BrokenMindRecordError,
        match=(
            rf"^{no_db}/{TRAIN_SHARD}: its index file {TRAIN_SHARD}.db is missing \(a MindRecord "
            r"shard needs both\); copy it again"
        ),
    ):
        check_mindrecord(os.path.join(no_db, TRAIN_SHARD))
    # A damaged second shard is found from the first one's list of shards.
    second = _broken_copy(data, tmp_path / "b", lambda shard: _truncate(shard[:-1] + "1"))
    with pytest.raises(BrokenMindRecordError, match=rf"^{second}/retinanet.mindrecord1: truncated "):
        check_mindrecord(os.path.join(second, TRAIN_SHARD))


def test_the_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_ones(tmp_path, caplog):
    folder = str(tmp_path)
    with folder_lock(folder, ".train.lock", "training run") as path:
        holder = read_holder(path)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(
            FolderLockedError,
            match=rf"^{folder}: another training run \(pid "
            rf"{os.getpid()} on {socket.gethostname()}, ",
        ):
            with folder_lock(folder, ".train.lock", "training run"):
                pass
        assert read_holder(path)["pid"] == os.getpid()  # a refused run leaves the holder's file
    assert _files(folder) == []  # removed at the end
    # A holder of this host that is gone (a finished child's pid): taken over with a warning.
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / ".train.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    with caplog.at_level("WARNING", logger="nasfpn"):
        with folder_lock(folder, ".train.lock", "training run") as path:
            assert path == str(lock) and read_holder(path)["pid"] == os.getpid()
    assert f"taking over the lock of pid {dead.pid} on {socket.gethostname()}" in caplog.text
    # Another host's lock cannot be checked from here: never taken over, its file kept.
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with pytest.raises(FolderLockedError, match="pid 1 on elsewhere.*delete the lock file"):
        with folder_lock(folder, ".train.lock", "training run"):
            pass
    assert read_holder(str(lock))["host"] == "elsewhere"
    # A live process of this host in the record (a holder on a file system without flock): refused.
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "then"}))
    with pytest.raises(FolderLockedError, match=rf"pid {os.getppid()} on {socket.gethostname()}"):
        with folder_lock(folder, ".train.lock", "training run"):
            pass


def test_an_output_lock_takes_over_any_record_its_flock_does_not_hold(tmp_path, caplog):
    """The output folders' lock trusts the flock: a record of another host that no process flocks
    (its run was killed on a machine sharing the folder) does not block the next run."""
    from nasfpn.core.storage import OUTPUT_LOCK_NAME, output_folder_lock

    lock = tmp_path / OUTPUT_LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with caplog.at_level("WARNING", logger="nasfpn"):
        with output_folder_lock(str(tmp_path), "output_dir") as path:
            assert read_holder(path)["pid"] == os.getpid()
    assert "taking over the lock of pid 1 on elsewhere" in caplog.text
    assert _files(str(tmp_path)) == []


def test_check_output_dir_refuses_a_file_and_a_missing_room(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StorageError, match=rf"^{a_file}: is a file, expected a folder"):
        check_output_dir(str(a_file))
    with pytest.raises(StorageError, match=rf"^{a_file}/sub: a part of this path is a file"):
        check_output_dir(str(a_file / "sub"))
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StorageError, match=r"MB free, the checkpoint folder needs about"):
        check_output_dir(str(tmp_path / "new"), free * 2, "checkpoint folder")
    check_output_dir(str(tmp_path / "new"), 1)
    assert _files(tmp_path) == ["file", "new"] and _files(tmp_path / "new") == []


def test_the_stop_request_records_the_first_signal_and_ignores_a_second(capfd):
    import signal
    from nasfpn.training.preemption import StopRequest, StopVote

    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the handler before kill returns here
        assert stop.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_name == "SIGTERM"  # the first one is the reason
        assert StopVote(1)(stop.requested) is True
    err = capfd.readouterr().err
    assert "SIGTERM: stopping after the current step, which is checkpointed first" in err
    assert "SIGINT again: ignored, the checkpoint is being written" in err
    assert signal.getsignal(signal.SIGTERM) is before
