"""The Ascend 310 twin end to end (decode + preprocess + model + .bin writing) with the exported MINDIR
(MindSpore) and the exported ONNX (ONNX Runtime), side by side.

    python bench/bench_runtimes.py [--img_shape=[640,640]] [--images=4] [--rounds=2]

The images are COCO-sized (640x480) JPEG files written for the run; weights are random (speed does not
depend on them). Each runtime gets one untimed warm-up call, then the runtimes take turns over all
images for --rounds rounds; the table shows each runtime's best round.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import markdown_table, record  # noqa: E402

FORMATS = {
    "MINDIR": "MINDIR, MindSpore (mindspore.load + GraphCell)",
    "ONNX": "ONNX, ONNX Runtime (CPU provider)",
}


def write_jpegs(folder, count, size_hw=(480, 640), seed=0):
    """`count` JPEG files of smooth noise with a few filled rectangles (realistic decode cost)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size_hw
    for i in range(count):
        small = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        for _ in range(5):
            y, x = int(rng.integers(0, h - 60)), int(rng.integers(0, w - 60))
            colour = [int(c) for c in rng.integers(0, 256, size=3)]
            cv2.rectangle(image, (x, y), (x + 60, y + 60), colour, thickness=-1)
        cv2.imwrite(os.path.join(folder, f"bench_{i:03d}.jpg"), image)


def main(argv):
    count, rounds, args = 4, 2, []
    for a in argv:
        if a.startswith("--images="):
            count = int(a.split("=", 1)[1])
        elif a.startswith("--rounds="):
            rounds = int(a.split("=", 1)[1])
        else:
            args.append(a)
    import mindspore as ms
    from nasfpn.config.flat import load_config
    from nasfpn.deploy.app310_twin import RESULT_DIR, run_app
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network
    from nasfpn.inference.runtimes import open_runtime

    cfg = load_config(args)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    img_shape = tuple(cfg.img_shape)
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = os.path.join(tmp, "images")
        os.makedirs(image_dir)
        write_jpegs(image_dir, count)
        net = build_inference_network(cfg)
        runtimes = {}
        for fmt in FORMATS:
            runtimes[fmt] = open_runtime(export_network(net, os.path.join(tmp, "model"), fmt, 1, img_shape))
            runtimes[fmt](np.zeros((1, 3, *img_shape), np.float32))  # warm-up: compile / session init
        best = {}
        for _ in range(rounds):  # runtimes alternate, so load from other processes hits both alike
            for fmt, runtime in runtimes.items():
                out_dir = os.path.join(tmp, fmt)
                summary = run_app(runtime, image_dir, img_shape, out_dir, progress=False)
                if fmt not in best or summary["wall_seconds"] < best[fmt]["wall_seconds"]:
                    best[fmt] = summary
                outputs[fmt] = os.path.join(out_dir, RESULT_DIR)
        for fmt, summary in best.items():
            per_image = summary["wall_seconds"] / summary["count"]
            rows.append(
                [
                    FORMATS[fmt],
                    summary["count"],
                    f"{per_image:.3f}",
                    f"{1 / per_image:.2f}",
                    f"{summary['mean_model_ms']:.0f}",
                    f"{1000 * per_image - summary['mean_model_ms']:.0f}",
                ]
            )
        diff = _max_bin_difference(*outputs.values())
    body = (
        f"Ascend 310 twin end to end, {img_shape[0]}x{img_shape[1]}, batch 1, best of {rounds} rounds\n\n"
        + markdown_table(
            [
                "runtime",
                "images",
                "s/img end to end (best round)",
                "img/s",
                "model ms/img",
                "decode+preprocess+write ms/img",
            ],
            rows,
        )
        + f"\n\nmax |MINDIR - ONNX| over all .bin values: {diff:.1e}; 1-min load average at the end: "
        f"{os.getloadavg()[0]:.2f} (other processes on the machine slow both runtimes)"
    )
    record("Ascend 310 twin end to end", body, __file__, argv)


def _max_bin_difference(dir_a, dir_b):
    names = sorted(os.listdir(dir_a))
    return max(
        float(
            np.abs(
                np.fromfile(os.path.join(dir_a, n), np.float32)
                - np.fromfile(os.path.join(dir_b, n), np.float32)
            ).max()
        )
        for n in names
    )


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
