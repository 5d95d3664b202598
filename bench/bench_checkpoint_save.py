"""How long the checkpoint written when SIGTERM stops training takes, for the release-size network
(ResNet-50, NAS-FPN 7 stages x 256 channels, 640x640): `save_checkpoint_atomic` of the train
step's state (network, BatchNorm statistics, momentum moments, step), exactly what a preempted
run writes. A scheduler's grace period (Slurm --signal / KillWait, Kubernetes
terminationGracePeriodSeconds) must cover one training step plus this.

    python bench/bench_checkpoint_save.py [--folder=DIR] [--repeat=3] [--key=value ...]

--folder: where to write (default: a temporary folder; give the disk training writes to).
--key=value: config overrides (e.g. --fpn_stages=7 --img_shape=[640,640]).
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import machine_line, timeit, write_results_section  # noqa: E402

SECTION = "Checkpoint save (preemption grace period)"


def main(argv):
    folder, repeat, overrides = None, 3, []
    for arg in argv:
        if arg.startswith("--folder="):
            folder = arg.split("=", 1)[1]
        elif arg.startswith("--repeat="):
            repeat = int(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    from nasfpn.config.flat import load_config
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.training.train_step import TrainStep, build_optimizer
    from nasfpn.model import RetinaNetWithLoss, build_detector
    import mindspore as ms
    import numpy as np

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    cfg = load_config(overrides)
    net = RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), cfg.num_classes, cfg.gamma, cfg.alpha)
    optimizer = build_optimizer(net, np.full(10, 0.01, np.float32), cfg.momentum, cfg.weight_decay)
    step = TrainStep(net, optimizer, cfg.loss_scale)
    state = step.checkpoint_parameters()
    values = sum(item["data"].size for item in state)
    folder = folder or tempfile.mkdtemp(prefix="bench-ckpt-")
    path = os.path.join(folder, "bench-save.ckpt")
    best, median = timeit(lambda: save_checkpoint_atomic(state, path), repeat=repeat, warmup=1)
    size = os.path.getsize(path)
    os.remove(path)
    body = section_body(cfg, folder, len(state), values, size, best, median, repeat)
    print(body)
    write_results_section(
        SECTION, body, machine_line(), "python bench/bench_checkpoint_save.py " + " ".join(argv)
    )


def section_body(cfg, folder, tensors, values, size, best, median, repeat):
    return (
        f"`save_checkpoint_atomic` of the train step's state (what a SIGTERM'd run writes), "
        f"backbone_depth {cfg.backbone_depth}, fpn_stages {cfg.fpn_stages}, fpn_channels "
        f"{cfg.fpn_channels}, img_shape {list(cfg.img_shape)}, written to {folder}\n\n"
        "| tensors | values | file | best s | median s | saves |\n|---|---|---|---|---|---|\n"
        f"| {tensors} | {values / 1e6:.1f} M | {size / 2**20:.0f} MB | {best:.2f} | {median:.2f} | "
        f"{repeat} |"
    )


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
