"""The repository's entry points run as a user runs them: a subprocess started in another folder."""

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": REPO_ROOT, "GLOG_v": "3"}


def run_command(args, cwd=REPO_ROOT, timeout=600, env=None):
    """`args` as a process in `cwd` with the test environment (plus `env`), its output as text."""
    return subprocess.run(
        list(args), cwd=str(cwd), env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def run_script(script, options, args, cwd, timeout=600):
    """python <repo>/<script> <options> <args> in `cwd` (options: the test's network flags)."""
    return run_command([sys.executable, os.path.join(REPO_ROOT, script), *options, *args], cwd, timeout)


def run_shell_script(args, timeout=120, **env):
    """bash <args> in the repository root, with extra environment variables."""
    return run_command(["bash", *args], REPO_ROOT, timeout, env)


def assert_one_line_error(run, status, *fragments):
    """The policy for user errors / failed runs: the status, `error: ...`, no traceback."""
    assert run.returncode == status, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def convert_embedded_val_set(work, num_val, seed, options):
    """An embedded COCO-layout set with `num_val` val images in work/shapes, converted by
    create_data.py to an eval MindRecord in work/mr. Returns (coco_root, mindrecord_dir)."""
    from nasfpn.data.embedded import generate_embedded_dataset

    root = str(work / "shapes")
    generate_embedded_dataset(root, num_train=1, num_val=num_val, size=144, seed=seed)
    run = run_script(
        "create_data.py",
        options,
        [
            "--create_dataset=coco",
            f"--coco_root={root}",
            "--is_training=false",
            f"--mindrecord_dir={work / 'mr'}",
            "--num_shards=1",
        ],
        cwd=str(work),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return root, str(work / "mr")
