"""The CPU demo's figures: runs `bash scripts/run_demo.sh`, times it, and records its accuracy (the
checkpoint, the exported ONNX fp32 and INT8 models) and training speed from what it wrote.

    python bench/bench_demo.py [--key=value ...]         run the demo (overrides go to it), then record
    python bench/bench_demo.py --no_run [--demo_dir=outputs/demo]   record an existing run (no wall time)

The accuracy depends on the machine: CPU kernels sum in different orders on different instruction
sets, training drifts apart from there, and the val set has 40 images, so AP on another machine
differs by a few points. Compare figures of one machine.
"""

import csv
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import markdown_table, record  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (row label, folder of metrics.json under the demo folder)
EVALUATIONS = (
    ("checkpoint (`eval.py --checkpoint_path`)", "eval"),
    ("ONNX fp32 (`eval.py --model_path`)", "eval_onnx"),
    ("ONNX INT8 (`eval.py --model_path`)", "eval_int8"),
)


def run_demo(overrides):
    """Seconds `bash scripts/run_demo.sh` took; its output goes to this terminal."""
    start = time.perf_counter()
    subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "run_demo.sh"), *overrides], check=True)
    return time.perf_counter() - start


def accuracy_rows(demo_dir):
    rows = []
    for label, folder in EVALUATIONS:
        path = os.path.join(demo_dir, folder, "metrics.json")
        if os.path.exists(path):
            with open(path) as f:
                m = json.load(f)
            rows.append([label, f"{m['AP']:.3f}", f"{m['AP50']:.3f}", f"{m['AP75']:.3f}"])
    return rows


def training_figures(demo_dir):
    """(optimizer steps, median seconds per step) from the demo's train_log.csv."""
    with open(os.path.join(demo_dir, "ckpt", "ckpt_0", "train_log.csv")) as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows[1:]]  # the first step compiles the graph
    return int(rows[-1]["global_step"]), statistics.median(seconds) if seconds else float("nan")


def main(argv):
    demo_dir, run, overrides = os.path.join("outputs", "demo"), True, []
    for a in argv:
        if a == "--no_run":
            run = False
        elif a.startswith("--demo_dir="):
            demo_dir = a.split("=", 1)[1]
        else:
            overrides.append(a)
    wall = run_demo(overrides) if run else None
    rows = accuracy_rows(demo_dir)
    if not rows:
        raise SystemExit(f"error: no {demo_dir}/eval/metrics.json: run scripts/run_demo.sh first")
    steps, per_step = training_figures(demo_dir)
    lines = [
        f"`configs/demo_cpu.yaml`{' with ' + ' '.join(overrides) if overrides else ''}, "
        f"40 val images of the embedded dataset",
        markdown_table(["model", "mAP@[.5:.95]", "mAP@0.5", "mAP@0.75"], rows),
        f"Training: {steps} steps, median {per_step:.2f} s/step"
        + (f"; the whole demo {int(wall // 60)} min {wall % 60:.0f} s" if wall else "")
        + f"; 1-min load average at the end: {os.getloadavg()[0]:.2f}",
    ]
    record("The demo", "\n\n".join(lines), __file__, argv)


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
