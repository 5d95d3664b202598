"""Seconds per forward of the inference network: MindSpore cell (graph mode), the exported MINDIR,
and the exported ONNX in onnxruntime, side by side in one run.

    python bench/bench_inference.py [--img_shape=[640,640]] [--repeat=5]
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import markdown_table, record, timeit  # noqa: E402


def main(argv):
    repeat = 5
    args = []
    for a in argv:
        if a.startswith("--repeat="):
            repeat = int(a.split("=", 1)[1])
        else:
            args.append(a)
    import mindspore as ms
    from nasfpn.config.flat import load_config
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network
    from nasfpn.inference.runtimes import open_runtime

    cfg = load_config(args)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    net = build_inference_network(cfg)
    images = np.random.default_rng(0).normal(size=(1, 3, *cfg.img_shape)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = [("MindSpore cell, graph mode", open_runtime(net))]
        for fmt in ("MINDIR", "ONNX"):
            path = export_network(net, os.path.join(tmp, "model"), fmt, 1, tuple(cfg.img_shape))
            runtimes.append(
                (
                    f"{fmt} ({'mindspore.load + GraphCell' if fmt == 'MINDIR' else 'onnxruntime'})",
                    open_runtime(path),
                )
            )
        reference = None
        for name, runtime in runtimes:
            best, median = timeit(lambda: runtime(images), repeat=repeat, warmup=1)
            outputs = runtime(images)
            diff = (
                0.0
                if reference is None
                else float(max(np.abs(o - r).max() for o, r in zip(outputs, reference)))
            )
            reference = reference or outputs
            rows.append([name, f"{best:.3f}", f"{median:.3f}", f"{diff:.1e}"])
    base = float(rows[0][1])
    for row in rows:
        row.append(f"{base / float(row[1]):.2f}x")
    body = (
        f"Inference, {cfg.img_shape[0]}x{cfg.img_shape[1]}, batch 1, best of {repeat}\n\n"
        + markdown_table(
            ["runtime", "best s/img", "median s/img", "max |diff| vs cell", "speed vs cell"], rows
        )
    )
    record("Inference runtimes", body, __file__, argv)


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
