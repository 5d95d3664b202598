"""The repository's entry points run as a user runs them: a subprocess started in another folder."""
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": REPO_ROOT, "GLOG_v": "3"}


def run_script(script, options, args, cwd):
    """python <repo>/<script> <options> <args> in `cwd` (options: the test's network flags)."""
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), *options, *args], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=600)


def convert_embedded_val_set(work, num_val, seed, options):
    """An embedded COCO-layout set with `num_val` val images in work/shapes, converted by
    create_data.py to an eval MindRecord in work/mr. Returns (coco_root, mindrecord_dir)."""
    from src.data.embedded import generate_embedded_dataset
    root = str(work / "shapes")
    generate_embedded_dataset(root, num_train=1, num_val=num_val, size=144, seed=seed)
    run = run_script("create_data.py", options, ["--create_dataset=coco", f"--coco_root={root}",
                                                 "--is_training=false", f"--mindrecord_dir={work / 'mr'}",
                                                 "--num_shards=1"], cwd=str(work))
    assert run.returncode == 0, run.stderr[-3000:]
    return root, str(work / "mr")
