"""Distributed training: the message of a failed set-up, and two msrun nodes on this machine."""

import os
import socket
import stat
import subprocess
import time

import mindspore as ms
import numpy as np
import pytest

from nasfpn.training.distributed import init_failure_message
from tests.helpers.tiny_training import TRAIN_ARGS


# The message of a failed distributed set-up names the real situation (no launcher, or a peer failed).


def test_without_a_launcher_the_message_asks_for_one():
    message = init_failure_message("no MS_ROLE", {})
    assert message.startswith("--distribute=True needs a distributed launcher (msrun, or an Ascend")
    assert message.endswith(": no MS_ROLE")


def test_under_msrun_the_scheduler_points_to_the_failed_worker():
    message = init_failure_message("worker 0 is the first one timed out", {"MS_ROLE": "MS_SCHED"})
    assert message == (
        "distributed set-up failed in the msrun scheduler (worker 0 is the first one "
        "timed out); another process probably exited first: its log has the cause"
    )
    assert "needs a distributed launcher" not in message


def test_a_rank_table_launch_is_a_launcher_too():
    message = init_failure_message("timeout", {"RANK_TABLE_FILE": "/r.json", "RANK_ID": "3"})
    assert message.startswith("distributed set-up failed in this rank (timeout)")


# Multi-node launch: two msrun nodes simulated on this machine (two launch-script invocations, node
# ranks 0 and 1, one worker each, master on 127.0.0.1) train the demo network to identical weights; a
# node that cannot reach the master fails with a message within --cluster_timeout.
#
# msrun starts the master (its scheduler) on every node whose `ip addr` lists --master_addr. On one
# machine that would be both nodes, so node 1 runs with an `ip` on PATH that lists no address: what
# a second machine sees. Everything else - msrun, the scheduler, TCP, the workers - is real.

SCRIPT = "scripts/run_distribute_train_cpu.sh"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_command(data, ckpt, rank, port, *extra):
    return [
        "bash",
        SCRIPT,
        "1",
        data,
        *TRAIN_ARGS,
        "--epoch_size=2",
        f"--save_checkpoint_path={ckpt}",
        "--node_num=2",
        f"--node_rank={rank}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        *extra,
    ]


def _as_another_machine(tmp_path):
    """Environment whose `ip -j addr` lists no address (so msrun starts no second master)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    ip = shim / "ip"
    ip.write_text("#!/bin/sh\necho '[]'\n")
    ip.chmod(ip.stat().st_mode | stat.S_IXUSR)
    return dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="module")
def tiny_data(tiny_mindrecord):
    return tiny_mindrecord[0]


@pytest.mark.slow
def test_two_nodes_of_one_worker_train_to_identical_weights(repo_root, tiny_data, tmp_path):
    port = _free_port()
    ckpt = tmp_path / "ck"
    node0 = subprocess.Popen(
        _node_command(tiny_data, ckpt, 0, port, "--accumulate_steps=2"),
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        node1 = subprocess.run(
            _node_command(tiny_data, ckpt, 1, port, "--accumulate_steps=2"),
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=600,
            env=_as_another_machine(tmp_path),
        )
        out0, _ = node0.communicate(timeout=300)
    finally:
        if node0.poll() is None:
            node0.kill()
    assert node0.returncode == 0, out0[-3000:]
    assert node1.returncode == 0, node1.stdout[-2000:] + node1.stderr[-2000:]
    assert "node 0 of 2, 1 of 2 workers" in out0 and "node 1 of 2, 1 of 2 workers" in node1.stdout
    # 8 images / 2 ranks / batch 2 = 2 batches per epoch: 1 optimizer step at accumulate_steps=2
    a = ms.load_checkpoint(str(ckpt / "ckpt_0" / "retinanet-2_1.ckpt"))
    b = ms.load_checkpoint(str(ckpt / "ckpt_1" / "retinanet-2_1.ckpt"))
    trainable = [k[len("moments.") :] for k in a if k.startswith("moments.")]
    assert len(trainable) > 50 and int(a["global_step"].asnumpy()[0]) == 2
    for name in trainable:  # the all-reduced mean gradient: every rank takes the same update
        np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy(), err_msg=name)
    assert any(np.abs(a[k].asnumpy()).sum() > 0 for k in a if k.startswith("moments."))


def test_a_node_that_cannot_reach_the_master_fails_within_the_timeout(repo_root, tmp_path):
    port = _free_port()  # nothing listens there: node 0 was never started
    timeout = 4
    start = time.monotonic()
    run = subprocess.run(
        _node_command(str(tmp_path), tmp_path / "ck", 1, port, f"--cluster_timeout={timeout}"),
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert run.returncode == 1
    assert (
        f"error: node 1 cannot reach the master 127.0.0.1:{port} within {timeout} s: start node 0 first"
    ) in run.stderr
    assert timeout <= elapsed < timeout + 30
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--node_rank=2", "--node_rank must be in 0..1 (--node_num=2), got 2"),
        ("--master_port=70000", "--master_port must be in 1..65535, got 70000"),
        ("--cluster_timeout=0", "--cluster_timeout must be >= 1"),
    ],
)
def test_node_options_are_checked_before_launching(repo_root, tmp_path, option, expected):
    cmd = ["bash", SCRIPT, "1", str(tmp_path), "--node_num=2", "--node_rank=0", option]
    run = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().endswith(f"error: {expected}")
