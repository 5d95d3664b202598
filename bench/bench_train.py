"""Seconds per training step and peak memory of the full release network (ResNet-50, NAS-FPN 7@256,
640x640) on the device at hand, graph mode, on a fixed synthetic batch.

    python bench/bench_train.py [--batch_size=2] [--steps=3] [--device_target=CPU] [--amp_level=O0]

Peak memory is the process's maximum resident set (CPU) - for GPU/Ascend read the device's own
tools. Each measured step is a full forward + backward + Momentum update.
"""
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import machine_line, markdown_table  # noqa: E402


def main(argv):
    steps = 3
    args = []
    for a in argv:
        if a.startswith("--steps="):
            steps = int(a.split("=", 1)[1])
        else:
            args.append(a)
    import mindspore as ms
    from src.boxes import AnchorMatcher, Anchors, AnchorSpec
    from src.config import load_config
    from src.model import RetinaNetWithLoss, build_detector
    from src.training.train_step import TrainStep, build_optimizer
    cfg = load_config(["--batch_size=2", *args])
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device(cfg.device_target)
    matcher = AnchorMatcher(Anchors(AnchorSpec.from_config(cfg)))
    rng = np.random.default_rng(0)
    targets = [matcher.encode(np.array([[0.1, 0.1, 0.5, 0.4], [0.3, 0.5, 0.9, 0.95]], np.float32), [1, 17])
               for _ in range(cfg.batch_size)]
    batch = [ms.Tensor(rng.normal(size=(cfg.batch_size, 3, *cfg.img_shape)).astype(np.float32))]
    batch += [ms.Tensor(np.stack([t[k] for t in targets])) for k in range(3)]
    net = RetinaNetWithLoss(build_detector(cfg), cfg.num_classes, cfg.gamma, cfg.alpha)
    if cfg.amp_level != "O0" and cfg.device_target != "CPU":
        ms.amp.auto_mixed_precision(net, cfg.amp_level)
    step = TrainStep(net, build_optimizer(net, np.full(steps + 1, 1e-4, np.float32)), cfg.loss_scale)
    step.set_train()
    start = time.perf_counter()
    step(*batch)[0].asnumpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(*batch)[0].asnumpy()
        times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"\nTraining step, {cfg.img_shape[0]}x{cfg.img_shape[1]}, batch {cfg.batch_size}, "
          f"{cfg.device_target}, amp {cfg.amp_level} — {machine_line()}\n")
    print(markdown_table(["first step (incl. compile) s", "best s/step", "median s/step", "images/s",
                          "peak RSS GB"],
                         [[f"{first:.1f}", f"{min(times):.2f}", f"{sorted(times)[len(times) // 2]:.2f}",
                           f"{cfg.batch_size / min(times):.2f}", f"{peak_gb:.1f}"]]))


if __name__ == "__main__":
    main(sys.argv[1:])
