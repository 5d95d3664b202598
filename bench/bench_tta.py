"""Test-time augmentation on the demo model: COCO AP and eval.py's wall time without TTA, with
the flip, with an extra scale, and with both.

    python bench/bench_tta.py --checkpoint_path=outputs/demo/ckpt/ckpt_0/retinanet-24_40.ckpt \
        [--demo_dir=outputs/demo] [--scales=[2.0]]

Each variant is one eval.py run in this process (network build included, as a user waits for
it), on the demo's val MindRecord, with configs/demo_cpu.yaml.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import markdown_table, record  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_eval(common, extra):
    import eval as eval_entry

    start = time.perf_counter()
    stats = eval_entry.main([*common, *extra])
    return stats, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_path", required=True)
    parser.add_argument("--demo_dir", default=os.path.join(REPO, "outputs", "demo"))
    parser.add_argument("--scales", default="[2.0]")
    args = parser.parse_args(argv)
    out = os.path.join(args.demo_dir, "eval_tta")
    common = [
        f"--config_path={os.path.join(REPO, 'configs', 'demo_cpu.yaml')}",
        f"--coco_root={os.path.join(args.demo_dir, 'coco')}",
        f"--mindrecord_dir={os.path.join(args.demo_dir, 'mindrecord')}",
        f"--checkpoint_path={args.checkpoint_path}",
        "--report_images=0",
    ]
    variants = [
        ("none", []),
        ("flip", ["--tta_flip=true"]),
        (f"scales {args.scales}", [f"--tta_scales={args.scales}"]),
        (f"flip + scales {args.scales}", ["--tta_flip=true", f"--tta_scales={args.scales}"]),
    ]
    # a first, unrecorded run pays the one-off imports and kernel compiles for every variant
    run_eval(common, [f"--eval_output_dir={out}/warmup"])
    rows, base = [], None
    for i, (name, extra) in enumerate(variants):
        stats, seconds = run_eval(common, [*extra, f"--eval_output_dir={out}/{i}"])
        base = base or (stats, seconds)
        rows.append(
            (
                name,
                f"{stats['AP']:.4f}",
                f"{100 * (stats['AP'] - base[0]['AP']):+.2f}",
                f"{stats['AP50']:.4f}",
                f"{seconds:.1f}",
                f"{seconds / base[1]:.2f}x",
            )
        )
    body = (
        "The demo model on its 40 val images (configs/demo_cpu.yaml, 128x128; an extra scale is "
        "a factor of the input size, rounded to a multiple of 128). Boxes of all views merged by "
        "the usual per-class NMS over their union. Time: eval.py's whole run (network build and "
        "graph compile included; one unrecorded run first).\n\n"
        + markdown_table(("TTA", "AP", "AP points vs none", "AP50", "eval seconds", "time vs none"), rows)
    )
    record("Test-time augmentation on the demo model", body, __file__, argv or sys.argv[1:])


if __name__ == "__main__":
    main()
