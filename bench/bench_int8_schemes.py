"""Which INT8 scheme: ONNX Runtime static QDQ variants side by side in one run, against the fp32
ONNX model of the same weights: time per image at batch 1, and how many convolutions ONNX Runtime
turns into integer QLinearConv (the others run in float between Dequantize and Quantize).

    python bench/bench_int8_schemes.py [--img_shape=[640,640]] [--rounds=3] [--calibration=4]

Variants: per-channel vs per-tensor weights, uint8 vs int8 activations, Conv only vs Conv + Add +
MaxPool. Release network (or the config given), random weights, inputs smooth noise. Accuracy is
not compared here (random weights say nothing about it): the chosen scheme's mAP cost is measured
on the demo model by bench/bench_deploy.py --demo_dir.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.bench_deploy import synthetic_images  # noqa: E402
from bench.common import markdown_table, record  # noqa: E402

SCHEMES = {
    "per-channel int8 weights, uint8 activations, Conv (export.py)": dict(),
    "per-channel, int8 activations, Conv": dict(activations="int8"),
    "per-tensor weights, uint8 activations, Conv": dict(per_channel=False),
    "per-channel, uint8, Conv + Add + MaxPool": dict(op_types=("Conv", "Add", "MaxPool")),
}


def integer_convolutions(path):
    """'QLinearConv count / Conv count' of the graph ONNX Runtime actually runs for `path`."""
    import onnx
    import onnxruntime as ort

    optimized = path + ".optimized"
    options = ort.SessionOptions()
    options.optimized_model_filepath = optimized
    options.log_severity_level = 3  # its warning about saving hardware-specific graphs
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(optimized).graph.node]
    return f"{ops.count('QLinearConv')} / {ops.count('QLinearConv') + ops.count('Conv')}"


def main(argv):
    import mindspore as ms
    from nasfpn.config.flat import load_config
    from nasfpn.inference.build import build_inference_network
    from nasfpn.deploy.export import export_network
    from nasfpn.deploy.quantize import calibration_batches, quantize_onnx_int8
    from nasfpn.inference.runtimes import open_runtime

    rounds, count, rest = 3, 4, []
    for a in argv:
        if a.startswith("--rounds="):
            rounds = int(a.split("=", 1)[1])
        elif a.startswith("--calibration="):
            count = int(a.split("=", 1)[1])
        else:
            rest.append(a)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    cfg = load_config(rest)
    img_shape = tuple(cfg.img_shape)
    net = build_inference_network(cfg)
    calibration = calibration_batches(synthetic_images(count, img_shape, seed=1), 1)
    test = np.stack(synthetic_images(1, img_shape, seed=2))
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export_network(net, os.path.join(tmp, "fp32"), "ONNX", 1, img_shape)
        runtimes = {"fp32 ONNX": open_runtime(fp32_path)}
        fused = {"fp32 ONNX": "-"}
        for i, (name, options) in enumerate(SCHEMES.items()):
            path = quantize_onnx_int8(fp32_path, os.path.join(tmp, f"q{i}.onnx"), calibration, **options)
            runtimes[name] = open_runtime(path)
            fused[name] = integer_convolutions(path)
        for runtime in runtimes.values():
            runtime(test)  # warm-up
        best = {}
        for _ in range(rounds):
            for name, runtime in runtimes.items():
                start = time.perf_counter()
                runtime(test)
                best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
    rows = [
        [name, f"{seconds:.3f}", f"{seconds / best['fp32 ONNX']:.2f}x", fused[name]]
        for name, seconds in best.items()
    ]
    import onnxruntime

    body = (
        f"INT8 schemes, {img_shape[0]}x{img_shape[1]}, batch 1, best of {rounds}, random weights, "
        f"calibrated on {count} synthetic images\n\n"
        + markdown_table(["model", "s/img", "vs fp32 ONNX", "integer convs / all convs"], rows)
        + f"\n\n1-min load average at the end: {os.getloadavg()[0]:.2f}"
    )
    record("INT8 schemes", body, __file__, argv, **{"ONNX Runtime": onnxruntime.__version__})


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
