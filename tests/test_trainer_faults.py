"""Training under faults, judged by the files left behind: real train.py processes killed with
SIGKILL mid-save and mid-epoch, a checkpoint write that fails for real (RLIMIT_FSIZE), another
run's checkpoints in the folder, non-finite BatchNorm statistics, a truncated newest checkpoint, one
with flipped bytes (and every one damaged),
--resume=True with nothing to resume from, a checkpoint of a bigger network."""

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from nasfpn.model_files.checkpoint import read_checkpoint, remove_stale_temporaries, save_checkpoint_atomic
from nasfpn.training.checkpoint_store import CheckpointFolderError, CheckpointStore

from tests.conftest import TINY, make_config
from tests.helpers.cli import assert_one_line_error
from tests.helpers.filesystems import tmpfs
from tests.helpers.tiny_training import (
    STEPS_PER_EPOCH,
    TRAIN_ARGS,
    lineage_args,
    log_rows,
    logged_steps,
    run_train,
    temporaries,
    train_command,
)

FINAL = ["checkpoints.json", "train_log.csv"]
LOCK = ".train.lock"  # held by a running train.py in its checkpoint folder


def assert_same_entries(mine, theirs):
    """Two loaded checkpoints hold the same names, bit-equal tensors and the same model
    description (a string entry: nasfpn/model_files/description.py)."""
    assert set(mine) == set(theirs)
    for name, value in theirs.items():
        if isinstance(value, str):
            assert mine[name] == value, name
        else:
            np.testing.assert_array_equal(mine[name].asnumpy(), value.asnumpy(), err_msg=name)


@pytest.fixture(scope="module")
def data(tiny_mindrecord):
    return tiny_mindrecord[0]


def _args(data, ckpt, epochs, keep=1):
    return lineage_args(data, ckpt, epochs, keep)


def _files(folder):
    return sorted(os.listdir(folder))


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _record(folder):
    with open(os.path.join(folder, "checkpoints.json")) as f:
        return [c["file"] for c in json.load(f)["checkpoints"]]


def _copy_lineage(folder, root):
    """A copy of a rank folder as <root>/ckpt_0; returns (save_checkpoint_path, rank folder)."""
    shutil.copytree(folder, os.path.join(root, "ckpt_0"))
    return str(root), os.path.join(root, "ckpt_0")


@pytest.fixture(scope="module")
def uninterrupted(repo_root, data, tmp_path_factory):
    """The reference: 3 epochs in one process."""
    ckpt = tmp_path_factory.mktemp("uninterrupted")
    run = run_train(repo_root, *_args(data, ckpt, 3))
    assert run.returncode == 0, run.stderr[-3000:]
    return os.path.join(ckpt, "ckpt_0")


@pytest.fixture(scope="module")
def from_nothing(tiny_first_epoch):
    """--resume=True into a folder holding no checkpoint, only the train_log.csv of an earlier run
    that died before its first checkpoint (3 rows); 1 epoch. Later tests start from a copy of its
    checkpoint (a session fixture: tests/test_trainer.py resumes it too)."""
    return tiny_first_epoch


@pytest.mark.slow
def test_resume_with_nothing_to_resume_from_warns_and_starts_from_scratch(from_nothing):
    folder, run = from_nothing
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        f"--resume=True but {folder} holds no checkpoint to resume from; training starts from scratch"
    ) in run.stderr
    assert "dropped 3 rows after step 0" in run.stderr
    assert _files(folder) == sorted(FINAL + ["retinanet-1_4.ckpt"])
    assert logged_steps(os.path.join(folder, "train_log.csv")) == [1, 2, 3, 4]
    assert _record(folder) == ["retinanet-1_4.ckpt"]


def _wait_for(condition, proc, timeout=300, interval=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, f"train.py ended (status {proc.returncode}) before the fault"
        time.sleep(interval)
    raise AssertionError("timed out waiting for the moment to kill")


def _start(repo_root, args, err_path):
    with open(err_path, "w") as err:
        return subprocess.Popen(train_command(*args), cwd=repo_root, stdout=subprocess.DEVNULL, stderr=err)


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _max_logged_step(path):
    try:
        return max(logged_steps(path), default=0)
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_killed_mid_save_and_mid_epoch_then_resumed_equals_the_uninterrupted_run(
    repo_root, data, uninterrupted, tmp_path
):
    folder = os.path.join(tmp_path, "ckpt_0")
    log = os.path.join(folder, "train_log.csv")
    args = _args(data, tmp_path, 3)
    # 1. SIGKILL while epoch 2's checkpoint is being written.
    proc = _start(repo_root, args, tmp_path / "run1.err")
    _wait_for(
        lambda: (
            os.path.isdir(folder)
            and [n for n in os.listdir(folder) if n.startswith(".tmp") and "retinanet-2_4" in n]
        ),
        proc,
    )
    _kill(proc)
    left = temporaries(folder)
    assert left, "the kill came after the save finished"
    # A SIGKILLed run cannot remove its lock: the next run takes it over (its pid is gone).
    assert sorted(set(_files(folder)) - set(left)) == sorted(FINAL + [LOCK, "retinanet-1_4.ckpt"])
    assert logged_steps(log) == list(range(1, 9))
    assert _record(folder) == ["retinanet-1_4.ckpt"]
    ms.load_checkpoint(os.path.join(folder, "retinanet-1_4.ckpt"))
    # 2. Resume; SIGKILL in the middle of epoch 3.
    killed_pid = proc.pid
    proc = _start(repo_root, (*args, "--resume=True"), tmp_path / "run2.err")
    _wait_for(lambda: _max_logged_step(log) >= 2 * STEPS_PER_EPOCH + 2, proc, interval=0.05)
    _kill(proc)
    err = (tmp_path / "run2.err").read_text()
    for name in left:
        assert f"removed {os.path.join(folder, name)}, left by an interrupted save" in err
    assert f"resumed from {folder}/retinanet-1_4.ckpt at step 4" in err
    assert "dropped 4 rows after step 4" in err
    assert f"{folder}/{LOCK}: taking over the lock of pid {killed_pid} on " in err
    assert temporaries(folder) == []
    assert _files(folder) == sorted(FINAL + [LOCK, "retinanet-2_4.ckpt"])  # epoch 1's rotated away
    steps = logged_steps(log)
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 10
    # 3. Resume to the end: the same steps, losses and weights as the uninterrupted run.
    run = run_train(repo_root, *args, "--resume=True")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"resumed from {folder}/retinanet-2_4.ckpt at step 8" in run.stderr
    assert _files(folder) == sorted(FINAL + ["retinanet-3_4.ckpt"])
    ours, reference = log_rows(log), log_rows(os.path.join(uninterrupted, "train_log.csv"))
    columns = ("global_step", "epoch", "loss", "lr")
    assert [tuple(r[c] for c in columns) for r in ours] == [tuple(r[c] for c in columns) for r in reference]
    mine = ms.load_checkpoint(os.path.join(folder, "retinanet-3_4.ckpt"))
    theirs = ms.load_checkpoint(os.path.join(uninterrupted, "retinanet-3_4.ckpt"))
    assert_same_entries(mine, theirs)


@pytest.mark.slow
def test_a_failing_checkpoint_write_leaves_no_temporary_and_the_previous_checkpoint(
    repo_root, data, from_nothing, tmp_path
):
    ckpt, folder = _copy_lineage(from_nothing[0], tmp_path)
    previous = os.path.join(folder, "retinanet-1_4.ckpt")
    before = _sha(previous)
    limit = os.path.getsize(previous) // 2  # train_log.csv fits, a checkpoint does not

    def limit_file_size():  # writes past the limit fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = run_train(repo_root, *_args(data, ckpt, 2), "--resume=True", preexec_fn=limit_file_size)
    assert run.returncode == 2, run.stderr[-3000:]  # the storage's limit: the user's to fix
    assert (
        f"error: could not write {folder}/retinanet-2_4.ckpt (file too large for this file system "
        f"or the process's file size limit); no part of it was kept, and the last good checkpoint "
        f"is {previous}. Free space on {folder}"
    ) in run.stderr
    assert _files(folder) == sorted(FINAL + ["retinanet-1_4.ckpt"])  # no temporary of either name
    assert _sha(previous) == before and _record(folder) == ["retinanet-1_4.ckpt"]
    ms.load_checkpoint(previous)


@pytest.mark.slow
def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(repo_root, data, from_nothing, tmp_path):
    ckpt, folder = _copy_lineage(from_nothing[0], tmp_path)
    good = os.path.join(folder, "retinanet-1_4.ckpt")
    truncated = os.path.join(folder, "retinanet-2_4.ckpt")
    with open(good, "rb") as f:
        data_bytes = f.read()
    with open(truncated, "wb") as f:
        f.write(data_bytes[: len(data_bytes) // 2])
    record = json.load(open(os.path.join(folder, "checkpoints.json")))
    record["checkpoints"].append({"file": "retinanet-2_4.ckpt", "global_step": 8})
    json.dump(record, open(os.path.join(folder, "checkpoints.json"), "w"))
    run = run_train(repo_root, *_args(data, ckpt, 2, keep=2), "--resume=True")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"resuming from {good}, an older checkpoint: {truncated}: not a readable MindSpore checkpoint" in (
        run.stderr
    )
    assert f"resumed from {good} at step 4" in run.stderr
    assert _files(folder) == sorted(FINAL + ["retinanet-1_4.ckpt", "retinanet-2_4.ckpt"])
    assert _record(folder) == ["retinanet-1_4.ckpt", "retinanet-2_4.ckpt"]
    assert int(ms.load_checkpoint(truncated)["global_step"].asnumpy()[0]) == 8  # rewritten, whole
    assert logged_steps(os.path.join(folder, "train_log.csv")) == list(range(1, 9))


def _flip_middle(path, count=256):
    """Invert `count` bytes in the middle of `path`, in place (same size; MindSpore saves read-only)."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        block = f.read(count)
        f.seek(-len(block), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in block))


@pytest.mark.slow
def test_flipped_bytes_in_the_newest_checkpoint_fall_back_to_the_newest_intact_one(
    repo_root, data, from_nothing, tmp_path
):
    """The newest checkpoint, a real one of the lineage (epoch 1's file under epoch 2's name, as the
    record lists it) with 256 bytes inverted: its CRC differs, one warning names it and the one
    resumed from, and the run redoes epoch 2 from epoch 1's state."""
    ckpt, folder = _copy_lineage(from_nothing[0], tmp_path)
    good = os.path.join(folder, "retinanet-1_4.ckpt")
    damaged = os.path.join(folder, "retinanet-2_4.ckpt")
    shutil.copyfile(good, damaged)
    _flip_middle(damaged)
    assert os.path.getsize(damaged) == os.path.getsize(good)
    record = json.load(open(os.path.join(folder, "checkpoints.json")))
    record["checkpoints"].append({**record["checkpoints"][0], "file": "retinanet-2_4.ckpt", "global_step": 8})
    json.dump(record, open(os.path.join(folder, "checkpoints.json"), "w"))
    run = run_train(repo_root, *_args(data, ckpt, 2, keep=2), "--resume=True")
    assert run.returncode == 0, run.stderr[-3000:]
    [line] = [line for line in run.stderr.splitlines() if "an older checkpoint" in line]
    assert f"resuming from {good}, an older checkpoint: {damaged} is damaged: its CRC-32 is" in line
    assert f"resumed from {good} at step 4" in run.stderr
    assert int(read_checkpoint(damaged)["global_step"].asnumpy()[0]) == 8  # rewritten, whole, intact
    assert logged_steps(os.path.join(folder, "train_log.csv")) == list(range(1, 9))


@pytest.mark.slow
def test_resume_with_every_checkpoint_damaged_is_one_line_naming_each(
    repo_root, data, from_nothing, tmp_path
):
    ckpt, folder = _copy_lineage(from_nothing[0], tmp_path)
    only = os.path.join(folder, "retinanet-1_4.ckpt")
    _flip_middle(only)
    before = _sha(only)
    run = run_train(repo_root, *_args(data, ckpt, 2), "--resume=True")
    assert_one_line_error(
        run, 2, f"--resume=True: no checkpoint in {folder} can be resumed from: {only} is damaged: its CRC-32"
    )
    assert _sha(only) == before and _record(folder) == ["retinanet-1_4.ckpt"]  # left as it was


@pytest.mark.slow
def test_another_runs_checkpoints_are_refused_by_a_new_run_and_never_rotated(
    repo_root, data, from_nothing, tmp_path
):
    ckpt, folder = _copy_lineage(from_nothing[0], tmp_path)
    foreign = os.path.join(folder, "retinanet-24_20.ckpt")  # a longer run's file, copied in by hand
    shutil.copyfile(os.path.join(folder, "retinanet-1_4.ckpt"), foreign)
    listing, log_text = _files(folder), open(os.path.join(folder, "train_log.csv")).read()
    refused = run_train(repo_root, *_args(data, ckpt, 3))
    assert refused.returncode == 2
    assert (
        f"error: {folder} already holds checkpoints (retinanet-1_4.ckpt, retinanet-24_20.ckpt); "
        "a new run there would mix"
    ) in refused.stderr
    assert "--resume=True" in refused.stderr and "--save_checkpoint_path" in refused.stderr
    assert _files(folder) == listing and open(os.path.join(folder, "train_log.csv")).read() == log_text
    # Resumed, the lineage continues from its own checkpoint and rotates only its own files.
    run = run_train(repo_root, *_args(data, ckpt, 3), "--resume=True")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"resumed from {folder}/retinanet-1_4.ckpt at step 4" in run.stderr
    assert _files(folder) == sorted(FINAL + ["retinanet-24_20.ckpt", "retinanet-3_4.ckpt"])
    assert logged_steps(os.path.join(folder, "train_log.csv")) == list(range(1, 13))


@pytest.mark.slow
def test_non_finite_batchnorm_statistics_write_nothing(data, tmp_path):
    from nasfpn.data.converters import find_mindrecord
    from nasfpn.data.pipeline import create_train_dataset
    from nasfpn.core.errors import TrainingError
    from nasfpn.training.hooks import Hook
    from nasfpn.training.trainer import Trainer

    cfg = make_config(*TRAIN_ARGS, *_args(data, tmp_path, 2))
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        dataset = create_train_dataset(
            find_mindrecord(data, "retinanet.mindrecord"),
            cfg.data,
            cfg.augmentation,
            cfg.anchors,
            cfg.model.img_shape,
            cfg.batch_size,
        )
        trainer = Trainer(cfg, dataset.get_dataset_size())
        trainer.restore()
        stat = next(p for p in trainer.net.get_parameters() if p.name.endswith("moving_variance"))

        class RunningStatisticsOverflow(Hook):
            """What a diverging run does: a BN running variance becomes inf, the loss stays finite
            (training uses batch statistics)."""

            def after_step(self, run):
                if run.global_step == 2 * STEPS_PER_EPOCH:
                    stat.set_data(ms.Tensor(np.full(stat.shape, np.inf, np.float32)))

        with pytest.raises(TrainingError) as raised:
            trainer.fit(dataset, extra_hooks=[RunningStatisticsOverflow()])
    finally:
        ms.set_context(mode=mode)
    folder = os.path.join(tmp_path, "ckpt_0")
    good = os.path.join(folder, "retinanet-1_4.ckpt")
    assert str(raised.value).startswith(
        f"step 8: {stat.name} has {stat.size} non-finite values of {stat.size}; retinanet-2_4.ckpt was "
        f"not written and the last good checkpoint is {good}."
    )
    assert _files(folder) == sorted(FINAL + ["retinanet-1_4.ckpt"])
    assert _record(folder) == ["retinanet-1_4.ckpt"]
    assert all(
        np.isfinite(v.asnumpy()).all() for v in ms.load_checkpoint(good).values() if v.dtype == ms.float32
    )
    assert logged_steps(os.path.join(folder, "train_log.csv")) == list(range(1, 9))


@pytest.mark.slow
def test_export_refuses_a_checkpoint_of_a_bigger_network(repo_root, tmp_path):
    from nasfpn.inference.build import build_inference_network

    two_stages = str(tmp_path / "two_stages.ckpt")
    ms.save_checkpoint(build_inference_network(make_config(*TINY, "--fpn_stages=2")), two_stages)
    out = tmp_path / "model"
    run = subprocess.run(
        [sys.executable, "export.py", *TINY, f"--checkpoint_path={two_stages}", f"--file_name={out}"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"error: {two_stages} does not fit the network: " in run.stderr
    assert "not in the network: network.neck.fpn_stages.1." in run.stderr and "fpn_stages" in run.stderr
    assert sorted(os.listdir(tmp_path)) == ["two_stages.ckpt"]


# ---- the checkpoint folder rules without training (fast) ----------------------------------------


class _Tiny(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(3, 2)
        self.bn = nn.BatchNorm1d(2)

    def construct(self, x):
        return self.bn(self.dense(x))


def test_rotation_deletes_only_this_lineage_and_keeps_the_newest(tmp_path):
    folder = str(tmp_path)
    foreign = tmp_path / "retinanet-24_20.ckpt"
    foreign.write_bytes(b"another run's file")
    with pytest.raises(
        CheckpointFolderError, match=rf"{folder} already holds checkpoints \(retinanet-24_20.ckpt\)"
    ):
        CheckpointStore(folder, _Tiny(), keep_max=2).open(resume=False)
    store = CheckpointStore(folder, _Tiny(), keep_max=2)
    store.open(resume=True)
    for epoch in (1, 2, 3):
        store.save_epoch(epoch, 5, epoch * 5)
    assert _files(folder) == [
        "checkpoints.json",
        "retinanet-24_20.ckpt",
        "retinanet-2_5.ckpt",
        "retinanet-3_5.ckpt",
    ]
    assert foreign.read_bytes() == b"another run's file"
    # A continuation takes over the record: it rotates the earlier run's files, not the foreign one.
    store = CheckpointStore(folder, _Tiny(), keep_max=1)
    assert store.open(resume=True) == [f"{folder}/retinanet-3_5.ckpt", f"{folder}/retinanet-2_5.ckpt"]
    store.save_epoch(4, 5, 20)
    assert _files(folder) == ["checkpoints.json", "retinanet-24_20.ckpt", "retinanet-4_5.ckpt"]


def test_non_finite_state_is_not_written(tmp_path):
    cell = _Tiny()
    store = CheckpointStore(str(tmp_path), cell, keep_max=1)
    store.open(resume=False)
    good = store.save_epoch(1, 5, 5)
    before = _sha(good)
    cell.bn.moving_mean.set_data(ms.Tensor(np.array([0.0, np.nan], np.float32)))
    from nasfpn.core.errors import TrainingError

    with pytest.raises(
        TrainingError,
        match=rf"step 10: bn.moving_mean has 1 non-finite values of 2; "
        rf"retinanet-2_5.ckpt was not written and the last good "
        rf"checkpoint is {good}",
    ):
        store.save_epoch(2, 5, 10, last_good=good)
    assert _files(tmp_path) == ["checkpoints.json", "retinanet-1_5.ckpt"] and _sha(good) == before


def test_stale_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    alive = subprocess.Popen(["sleep", "60"])  # its save may still be running
    try:
        names = [
            f".tmp{dead}-retinanet-2_4.tmp",
            f".tmp{dead}-retinanet-2_4.ckpt",
            f".tmp{dead}-checkpoints.json",
            f".tmp{dead}-notes.txt",  # not one of ours
            f".tmp{alive.pid}-retinanet-3_4.tmp",
            ".tmpfile",
            "retinanet.tmp",
            "retinanet-1_4.ckpt",
        ]
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        removed, in_use = remove_stale_temporaries(str(tmp_path), ("retinanet", "checkpoints.json"))
        assert sorted(os.path.basename(p) for p in removed) == sorted(names[:3])
        assert [os.path.basename(p) for p in in_use] == [f".tmp{alive.pid}-retinanet-3_4.tmp"]
        assert _files(tmp_path) == sorted(names[3:])
        with pytest.raises(subprocess.TimeoutExpired):  # only asked whether it exists, never signalled
            alive.wait(timeout=0.3)
    finally:
        alive.kill()
        alive.wait()


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # reaped: no process has this id now (reuse within the test is unlikely)


def test_a_failed_save_leaves_no_temporary_of_either_name(tmp_path):
    cell = _Tiny()
    target = tmp_path / "retinanet-1_5.ckpt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))  # the write fails for real (EFBIG)
    try:
        with pytest.raises(OSError, match="File too large"):
            save_checkpoint_atomic(cell, str(target))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert os.listdir(tmp_path) == []


def test_train_log_is_cut_back_to_the_resumed_step_and_a_foreign_one_is_refused(tmp_path):
    from nasfpn.training.hooks import TrainLogError, cut_train_log

    log = tmp_path / "train_log.csv"
    log.write_text(
        "global_step,epoch,loss,lr,seconds\n"
        + "".join(f"{s},{(s - 1) // 4 + 1},1.5,0.01,0.2\n" for s in range(1, 11))
        + "11,3,1."
    )
    assert cut_train_log(str(log), 8) == 3  # steps 9, 10 and the half-written 11
    assert logged_steps(str(log)) == list(range(1, 9)) and temporaries(str(tmp_path)) == []
    other = tmp_path / "other.csv"
    other.write_text("step,loss\n1,2.0\n")
    with pytest.raises(TrainLogError, match=f"{other}: not a train_log.csv written by this trainer"):
        cut_train_log(str(other), 0)
    assert other.read_text() == "step,loss\n1,2.0\n"


# ---- SIGTERM, a second run into the folder, another batch size, a disk that fills up -----------

EPOCHS = 3  # of the uninterrupted run
LOG_COLUMNS = ("global_step", "epoch", "loss", "lr")


def _rows(folder):
    return [tuple(r[c] for c in LOG_COLUMNS) for r in log_rows(os.path.join(folder, "train_log.csv"))]


@pytest.mark.slow
def test_sigterm_saves_the_step_a_second_run_is_refused_and_resume_equals_the_uninterrupted_run(
    repo_root, data, uninterrupted, tmp_path
):
    folder = os.path.join(tmp_path, "ckpt_0")
    log = os.path.join(folder, "train_log.csv")
    lock = os.path.join(folder, ".train.lock")
    args = _args(data, tmp_path, 3)
    with open(tmp_path / "run1.err", "w") as err:
        first = subprocess.Popen(train_command(*args), cwd=repo_root, stdout=subprocess.DEVNULL, stderr=err)
    # 1. A second run into the same folder while the first builds its network (before any
    #    checkpoint exists): refused, naming the folder and the holder.
    _wait_for(lambda: os.path.exists(lock), first)
    second = run_train(repo_root, *args)
    assert second.returncode == 2, second.stderr[-3000:]
    assert (
        f"error: {folder}: another training run (pid {first.pid} on {socket.gethostname()}, started "
    ) in second.stderr
    assert f"(lock {lock})" in second.stderr
    # 2. SIGTERM in the middle of epoch 2, and again at once: the step is finished and saved.
    _wait_for(lambda: _max_logged_step(log) >= STEPS_PER_EPOCH + 1, first)
    #    The second is sent once the first is acknowledged: two signals pending at once are one
    #    signal to the process (standard signals do not queue).
    first.send_signal(signal.SIGTERM)
    _wait_for(
        lambda: "SIGTERM: stopping after the current step" in (tmp_path / "run1.err").read_text(), first
    )
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 4
    err = (tmp_path / "run1.err").read_text()
    stopped = logged_steps(log)[-1]
    assert STEPS_PER_EPOCH < stopped < 2 * STEPS_PER_EPOCH, "the stop came at an epoch end"
    in_epoch = stopped - STEPS_PER_EPOCH
    saved = os.path.join(folder, f"retinanet-2_{in_epoch}.ckpt")
    assert (
        f"SIGTERM: stopped after step {stopped} (epoch 2, step {in_epoch} of {STEPS_PER_EPOCH}); "
        f"saved {saved} in "
    ) in err
    assert "SIGTERM again: ignored, the checkpoint is being written" in err
    # Rotation (keep 1) leaves only the stop's checkpoint; no lock, no temporary; the rows stop there.
    assert _files(folder) == ["checkpoints.json", f"retinanet-2_{in_epoch}.ckpt", "train_log.csv"]
    assert logged_steps(log) == list(range(1, stopped + 1))
    assert int(ms.load_checkpoint(saved)["global_step"].asnumpy()[0]) == stopped
    record = json.load(open(os.path.join(folder, "checkpoints.json")))["checkpoints"]
    assert record == [
        {
            "file": f"retinanet-2_{in_epoch}.ckpt",
            "global_step": stopped,
            "steps_per_epoch": STEPS_PER_EPOCH,
            "global_batch": 2,
            "batch_size": 2,
            "device_num": 1,
            "accumulate_steps": 1,
        }
    ]
    # 3. Resume: the same steps, losses and weights as the uninterrupted run, each row once.
    run = run_train(repo_root, *args, "--resume=True")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"resumed from {saved} at step {stopped} (epoch 1)" in run.stderr
    assert _rows(folder) == _rows(uninterrupted)
    assert _files(folder) == ["checkpoints.json", f"retinanet-{EPOCHS}_4.ckpt", "train_log.csv"]
    mine = ms.load_checkpoint(os.path.join(folder, f"retinanet-{EPOCHS}_4.ckpt"))
    theirs = ms.load_checkpoint(os.path.join(uninterrupted, f"retinanet-{EPOCHS}_4.ckpt"))
    assert_same_entries(mine, theirs)


@pytest.mark.slow
def test_resume_with_another_batch_size_is_refused_with_both_shapes(repo_root, data, uninterrupted, tmp_path):
    folder = os.path.join(tmp_path, "ckpt_0")
    shutil.copytree(uninterrupted, folder)
    before = {name: open(os.path.join(folder, name), "rb").read() for name in _files(folder)}
    run = run_train(repo_root, *_args(data, tmp_path, EPOCHS + 1), "--batch_size=4", "--resume=True")
    assert run.returncode == 2, run.stderr[-3000:]
    ckpt = os.path.join(folder, f"retinanet-{EPOCHS}_4.ckpt")
    assert (
        f"error: --resume=True: {ckpt} was trained with 4 steps per epoch of 2 images (batch_size 2 "
        "x 1 device(s) x accumulate_steps 1), this run has 2 steps per epoch of 4 images "
        f"(batch_size 4 x 1 device(s) x accumulate_steps 1); its step {EPOCHS * 4} would be another "
        "sample"
    ) in run.stderr
    assert f"--pre_trained={ckpt} --pre_trained_epoch_size={EPOCHS}" in run.stderr
    assert {name: open(os.path.join(folder, name), "rb").read() for name in _files(folder)} == before


@pytest.mark.slow
def test_a_disk_that_fills_up_while_saving_keeps_the_previous_checkpoint(
    repo_root, data, uninterrupted, tmp_path
):
    size = os.path.getsize(os.path.join(uninterrupted, f"retinanet-{EPOCHS}_4.ckpt"))
    # Room for the first checkpoint (and the start-up check), not for the second beside it.
    with tmpfs(tmp_path / "fills", f"{int(size * 1.5) // 1024}k") as fills:
        run = run_train(repo_root, *_args(data, fills, 2))
        folder = os.path.join(fills, "ckpt_0")
        assert run.returncode == 2, run.stderr[-3000:]
        assert (
            f"error: could not write {folder}/retinanet-2_4.ckpt (no space left on the device); no "
            f"part of it was kept, and the last good checkpoint is {folder}/retinanet-1_4.ckpt. "
            f"Free space on {folder}"
        ) in run.stderr
        assert "continue with --resume=True" in run.stderr
        assert _files(folder) == ["checkpoints.json", "retinanet-1_4.ckpt", "train_log.csv"]
        assert temporaries(folder) == []
        assert (
            int(ms.load_checkpoint(os.path.join(folder, "retinanet-1_4.ckpt"))["global_step"].asnumpy()[0])
            == STEPS_PER_EPOCH
        )
        assert logged_steps(os.path.join(folder, "train_log.csv")) == list(range(1, 2 * STEPS_PER_EPOCH + 1))
