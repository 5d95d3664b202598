"""Training step speed and peak memory of the full network (default: the release's ResNet-50,
NAS-FPN 7@256, 640x640) for several configurations side by side, on a fixed synthetic batch in
graph mode. Each configuration runs in its own process, one after another, so each peak is its own.

    python bench/bench_train.py [--steps=3] [--variants=today,none,backbone,all,amp] [--key=value ...]

--key=value: any config override (e.g. --batch_size=2 --img_shape=[320,320] --device_target=GPU).
Variants: `none` / `backbone` / `neck` / `all` set `recompute`; `amp` is `none` with amp_level O2
(GPU/Ascend only; skipped on CPU, which trains in float32); `today` is `none` with the per-element
non-finite gradient check the train step used before (4 elementwise passes over every gradient
instead of one sum), to measure that change in the same run.

Reported per variant: first step (incl. compilation), best and median s/step, images/s, peak memory
(CPU: the process's maximum resident set; GPU/Ascend: MindSpore's peak device allocation) and the
activation part of it (peak minus the resident memory after building network and optimizer), with
ratios against `none`.
"""

import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import markdown_table, record  # noqa: E402

DEFAULT_VARIANTS = ("today", "none", "backbone", "all", "amp")
RESULT_TAG = "BENCH_TRAIN_RESULT "


def _rss_gb():
    """Current resident set of this process (Linux /proc), GB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def variant_overrides(name):
    """Config overrides of one variant."""
    if name in ("none", "backbone", "neck", "all"):
        return [f"--recompute={name}"]
    if name == "today":
        return ["--recompute=none"]
    if name == "amp":
        return ["--recompute=none", "--amp_level=O2"]
    raise SystemExit(f"error: unknown variant {name!r}; expected some of {list(DEFAULT_VARIANTS)} or neck")


def _elementwise_check_step(TrainStep):
    """The train step with the non-finite check as it was: per element isfinite, not, cast, sum."""
    import mindspore as ms
    import mindspore.ops as ops

    count = ops.MultitypeFuncGraph("count")

    @count.register("Tensor")
    def _count(grad):
        return ops.logical_not(ops.isfinite(grad)).astype(ms.float32).sum()

    class ElementwiseCheckStep(TrainStep):
        def check_overflow(self, status, grads):
            return ops.addn(self.hyper_map(count, grads)) > 0

    return ElementwiseCheckStep


def run_variant(name, steps, overrides):
    """Build, compile and time one variant in this process; returns its figures."""
    import mindspore as ms
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from nasfpn.config.flat import load_config
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.model.recompute import apply_recompute
    from nasfpn.training.train_step import TrainStep, build_optimizer

    cfg = load_config(["--batch_size=2", *overrides, *variant_overrides(name)])
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device(cfg.device_target)
    matcher = AnchorMatcher(Anchors(cfg.anchors.spec(cfg.model.img_shape)))
    rng = np.random.default_rng(0)
    targets = [
        matcher.encode(np.array([[0.1, 0.1, 0.5, 0.4], [0.3, 0.5, 0.9, 0.95]], np.float32), [1, 17])
        for _ in range(cfg.batch_size)
    ]
    batch = [ms.Tensor(rng.normal(size=(cfg.batch_size, 3, *cfg.img_shape)).astype(np.float32))]
    batch += [ms.Tensor(np.stack([t[k] for t in targets])) for k in range(3)]
    detector = build_detector(cfg.model, cfg.anchors)
    apply_recompute(detector, cfg.recompute)
    net = RetinaNetWithLoss(detector, cfg.num_classes, cfg.gamma, cfg.alpha)
    if cfg.amp_level != "O0":
        ms.amp.auto_mixed_precision(net, cfg.amp_level)
    step_class = _elementwise_check_step(TrainStep) if name == "today" else TrainStep
    step = step_class(net, build_optimizer(net, np.full(steps + 1, 1e-4, np.float32)), cfg.loss_scale)
    step.set_train()
    built_gb = _rss_gb()
    start = time.perf_counter()
    step(*batch)[0].asnumpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(*batch)[0].asnumpy()
        times.append(time.perf_counter() - start)
    if cfg.device_target == "CPU":
        peak_gb, base_gb = _peak_rss_gb(), built_gb
    else:
        peak_gb, base_gb = ms.runtime.max_memory_allocated() / 1024**3, 0.0
    return {
        "variant": name,
        "first": first,
        "best": min(times),
        "median": float(np.median(times)),
        "images_per_s": cfg.batch_size / min(times),
        "peak_gb": peak_gb,
        "activation_gb": peak_gb - base_gb,
        "batch_size": cfg.batch_size,
        "img_shape": list(cfg.img_shape),
        "device_target": cfg.device_target,
    }


def run_in_subprocess(name, steps, overrides):
    """One variant in a fresh process (its own peak memory); None when it failed."""
    cmd = [sys.executable, os.path.abspath(__file__), f"--steps={steps}", f"--_variant={name}", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    print(f"variant {name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
    return None


def _ratio(value, reference):
    return f"{value / reference:.2f}x" if reference else "-"


def report(results, argv):
    first = results[0]
    reference = next((r for r in results if r["variant"] == "none"), None)
    caption = (
        f"Training step, {first['img_shape'][0]}x{first['img_shape'][1]}, batch {first['batch_size']}, "
        f"{first['device_target']}, graph mode, one process per variant"
    )
    rows = []
    for r in results:
        ref = reference or r
        rows.append(
            [
                r["variant"],
                f"{r['first']:.1f}",
                f"{r['best']:.2f}",
                f"{r['median']:.2f}",
                _ratio(r["best"], ref["best"]),
                f"{r['images_per_s']:.2f}",
                f"{r['peak_gb']:.2f}",
                _ratio(r["peak_gb"], ref["peak_gb"]),
                f"{r['activation_gb']:.2f}",
                _ratio(r["activation_gb"], ref["activation_gb"]),
            ]
        )
    table = markdown_table(
        [
            "variant",
            "first step s",
            "best s/step",
            "median s/step",
            "time vs none",
            "images/s",
            "peak GB",
            "peak vs none",
            "activations GB",
            "act. vs none",
        ],
        rows,
    )
    record(
        "Training step",
        f"{caption}\n\n{table}\n\n1-min load average at the end: {os.getloadavg()[0]:.2f}",
        __file__,
        argv,
    )


def main(argv):
    steps, variants, worker, overrides = 3, list(DEFAULT_VARIANTS), None, []
    for a in argv:
        if a.startswith("--steps="):
            steps = int(a.split("=", 1)[1])
        elif a.startswith("--variants="):
            variants = [v for v in a.split("=", 1)[1].split(",") if v]
        elif a.startswith("--_variant="):
            worker = a.split("=", 1)[1]
        else:
            overrides.append(a)
    if worker:
        print(RESULT_TAG + json.dumps(run_variant(worker, steps, overrides)), flush=True)
        return
    from nasfpn.config.flat import load_config

    device = load_config(overrides).device_target
    results = []
    for name in variants:
        variant_overrides(name)
        if name == "amp" and device == "CPU":
            print("amp: skipped (CPU trains in float32; amp_level is GPU/Ascend only)")
            continue
        print(f"running {name} ...", flush=True)
        result = run_in_subprocess(name, steps, overrides)
        if result:
            print(f"  {name}: {result['best']:.2f} s/step, peak {result['peak_gb']:.2f} GB", flush=True)
            results.append(result)
    if results:
        report(results, argv)


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
