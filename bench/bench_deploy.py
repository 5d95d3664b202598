"""Every deployment path side by side, in one run: the MindSpore cell, the MINDIR, ONNX Runtime
(fp32 and the INT8 ONNX) and OpenVINO (f32, bf16 and the same INT8 ONNX): time per image at batch
1 and 2, each path's time against the cell's, its achieved GFLOP/s against the 3x3-conv rate of
bench_conv.py measured in the same run, max |diff| vs the cell, the CPU model and its features; and
(with --demo_dir) each path's COCO mAP on the demo model by eval.py.

    python bench/bench_deploy.py [--img_shape=[640,640]] [--batches=1,2] [--rounds=3] [--quick]
        [--demo_dir=outputs/demo [--demo_checkpoint=CKPT]] [--no_speed]

--quick: batch 1 only, 1 round (a first look; the lead's figures come from the full run).
Speed: the release network (or the config given) with random weights (speed does not depend on
them), the INT8 model calibrated on CALIBRATION_IMAGES synthetic images (scales change values,
not speed). Each model gets an untimed warm-up; then the models of one batch size take turns,
--rounds times, so load from other processes hits all alike; the table shows each model's best
round. Peak memory: the models of one batch size (~5 GB at 640x640).
FLOPs: 2 x the multiply-adds of every Conv / MatMul / Gemm of the exported ONNX graph (shapes by
ONNX shape inference), counted once per image; the elementwise ops are left out (< 1%).
mAP: the demo's checkpoint (configs/demo_cpu.yaml, <demo_dir>/ckpt/ckpt_0/*.ckpt) is exported to
MINDIR, ONNX and INT8 ONNX (calibrated on the demo's training MindRecord) and every path is evaluated
by eval.py's main() on the demo's val set (<demo_dir>/mindrecord, <demo_dir>/coco).
OpenVINO's paths need requirements-openvino.txt (bench/run_all.sh installs it); without it they
are left out and the table says so.
"""

import gc
import glob
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import cpu_model, markdown_table, record  # noqa: E402

CALIBRATION_IMAGES = 8
CELL = "MindSpore cell (graph mode)"
# CPU flags that decide which path is fast (int8 dot products, bf16, Intel AMX tiles).
FEATURE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def parse_args(argv):
    opts = {"batches": [1, 2], "rounds": 3, "demo_dir": "", "demo_checkpoint": "", "speed": True}
    rest = []
    for a in argv:
        key, _, value = a.partition("=")
        if key == "--batches":
            opts["batches"] = [int(b) for b in value.split(",")]
        elif key == "--rounds":
            opts["rounds"] = int(value)
        elif key == "--quick":
            opts["batches"], opts["rounds"] = [1], 1
        elif key == "--demo_dir":
            opts["demo_dir"] = value
        elif key == "--demo_checkpoint":  # another checkpoint of the demo network
            opts["demo_checkpoint"] = value
        elif key == "--no_speed":
            opts["speed"] = False
        else:
            rest.append(a)
    return opts, rest


def cpu_features(cpuinfo_path="/proc/cpuinfo"):
    """The FEATURE_FLAGS this CPU lists in /proc/cpuinfo."""
    try:
        with open(cpuinfo_path) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return [flag for flag in FEATURE_FLAGS if flag in flags]


def openvino_precisions():
    """The OpenVINO precisions this CPU runs (f32, bf16), or [] when OpenVINO is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return []
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ["f32"] + (["bf16"] if "BF16" in capabilities else [])


def deployment_paths(precisions):
    """[(path name, exported file key, runtime, precision)]; the cell's file key is None."""
    paths = [
        (CELL, None, "auto", "f32"),
        ("MINDIR", "mindir", "auto", "f32"),
        ("ONNX Runtime fp32", "onnx", "onnxruntime", "f32"),
        ("ONNX Runtime INT8", "int8", "onnxruntime", "f32"),
    ]
    if "f32" in precisions:
        paths += [("OpenVINO f32", "onnx", "openvino", "f32"), ("OpenVINO INT8", "int8", "openvino", "f32")]
    if "bf16" in precisions:
        paths += [
            ("OpenVINO bf16", "onnx", "openvino", "bf16"),
            ("OpenVINO INT8, rest bf16", "int8", "openvino", "bf16"),
        ]
    return paths


def synthetic_images(count, img_shape, seed=0):
    """Normalised network inputs of smooth noise (what preprocess_image gives for photos)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = img_shape
    images = []
    for _ in range(count):
        small = rng.normal(size=(h // 16, w // 16, 3)).astype(np.float32)
        images.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1))
    return images


def export_all(net, folder, batch, img_shape, calibration):
    """{file key: model file} for one batch size: MINDIR, ONNX fp32, ONNX INT8."""
    from nasfpn.deploy.export import export_network
    from nasfpn.deploy.quantize import calibration_batches, int8_model_path, quantize_onnx_int8

    stem = os.path.join(folder, f"b{batch}")
    onnx = export_network(net, stem, "ONNX", batch, img_shape)
    return {
        "mindir": export_network(net, stem, "MINDIR", batch, img_shape),
        "onnx": onnx,
        "int8": quantize_onnx_int8(onnx, int8_model_path(onnx), calibration_batches(calibration, batch)),
    }


def onnx_flops_per_image(path):
    """2 x multiply-adds of the Conv / MatMul / Gemm nodes of an ONNX graph, per image of its batch."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]
    }
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight, out = shapes[node.input[1]], shapes[node.output[0]]
            total += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))  # each output: Cin/g x kh x kw MACs
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            total += 2 * int(np.prod(out)) * a[-1]
    batch = shapes[model.graph.input[0].name][0] or 1
    return total / batch


def time_paths(runners, inputs, rounds):
    """{(path, batch): best seconds per image}, the models taking turns each round; and the
    warm-up outputs."""
    outputs = {key: runtime(inputs[key[1]]) for key, runtime in runners.items()}  # warm-up
    best = {}
    for _ in range(rounds):
        for key, runtime in runners.items():
            start = time.perf_counter()
            runtime(inputs[key[1]])
            per_image = (time.perf_counter() - start) / key[1]
            best[key] = min(best.get(key, per_image), per_image)
    return best, outputs


def speed_table(cfg, opts, paths):
    from bench.bench_conv import conv3x3_gflops
    from nasfpn.inference.build import build_inference_network
    from nasfpn.inference.runtimes import open_runtime

    img_shape = tuple(cfg.img_shape)
    net = build_inference_network(cfg)
    calibration = synthetic_images(CALIBRATION_IMAGES, img_shape, seed=1)
    # The 3x3-conv rate before and after the paths, the better one kept: load from other processes
    # only lowers it.
    peak = conv3x3_gflops()
    best, outputs, loads = {}, {}, []
    # One batch size at a time, its models released before the next: the eight models of one
    # batch at 640x640 take ~5 GB, both batches at once were killed for memory on a 23 GB machine.
    for batch in opts["batches"]:
        with tempfile.TemporaryDirectory() as tmp:
            files = export_all(net, tmp, batch, img_shape, calibration)
            flops = onnx_flops_per_image(files["onnx"])
            runners = {
                (name, batch): open_runtime(files[key] if key else net, 0, runtime, precision)
                for name, key, runtime, precision in paths
            }
            loads.append(f"{os.getloadavg()[0]:.1f} at the start of batch {batch}")
            inputs = {batch: np.stack(synthetic_images(batch, img_shape, seed=2))}
            batch_best, batch_outputs = time_paths(runners, inputs, opts["rounds"])
            best.update(batch_best)
            outputs.update(batch_outputs)
            del runners
            gc.collect()
    peak = max(peak, conv3x3_gflops())
    loads.append(f"{os.getloadavg()[0]:.1f} at the end")
    cell_b1 = best[(CELL, opts["batches"][0])]
    rows = []
    for (name, batch), seconds in best.items():
        ref, got = outputs[(CELL, batch)], outputs[(name, batch)]
        diff = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
        # INT8 with random weights: scores sit at the class prior, the diff says nothing (see mAP).
        shown = "-" if name == CELL else "(see mAP)" if "INT8" in name else f"{diff:.1e}"
        achieved = flops / seconds / 1e9
        rows.append(
            [
                name,
                batch,
                f"{seconds:.3f}",
                f"{seconds / cell_b1:.2f}x",
                f"{achieved:.0f}",
                f"{achieved / peak:.2f}",
                shown,
            ]
        )
    header = [
        "path",
        "batch",
        "s/img (best round)",
        f"vs cell, batch {opts['batches'][0]}",
        "GFLOP/s",
        "vs 3x3-conv rate",
        "max |diff| vs cell (boxes, scores)",
    ]
    notes = (
        f"Network: {flops / 1e9:.1f} GFLOP per image at {img_shape[0]}x{img_shape[1]} (2 x the "
        f"multiply-adds of its convolutions, counted once); the 3x3-conv rate of bench_conv.py "
        f"(MindSpore float32, 256 channels at 80x80), measured in this run (best of before and "
        f"after): {peak:.0f} GFLOP/s. INT8 and bf16 paths can exceed it: their multiply-adds are "
        f"not float32. 1-min load average: {', '.join(loads)}."
    )
    return markdown_table(header, rows), notes


def demo_map_table(demo_dir, opts, paths):
    """Each path's COCO metrics on the demo model (eval.py main(), same post-processing)."""
    import eval as eval_script
    from nasfpn.config.flat import load_config
    from nasfpn.deploy.quantize import calibration_images
    from nasfpn.inference.build import build_inference_network

    checkpoints = (
        [opts["demo_checkpoint"]]
        if opts["demo_checkpoint"]
        else sorted(
            glob.glob(os.path.join(demo_dir, "ckpt", "ckpt_0", "retinanet-*_*.ckpt")), key=os.path.getmtime
        )
    )
    if not checkpoints:
        return None
    base = [
        "--config_path=configs/demo_cpu.yaml",
        f"--mindrecord_dir={demo_dir}/mindrecord",
        f"--coco_root={demo_dir}/coco",
    ]
    cfg = load_config(base)
    # Calibrate on training images (the eval pipeline's preprocessing), not on the images scored.
    mindrecord = os.path.join(cfg.mindrecord_dir, "retinanet.mindrecord0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        net = build_inference_network(cfg, checkpoints[-1])
        calibration = calibration_images(mindrecord, cfg.model.img_shape, cfg.calibration_images)
        runs = [("MindSpore cell (checkpoint)", [f"--checkpoint_path={checkpoints[-1]}"])]
        for batch in opts["batches"]:
            files = export_all(net, tmp, batch, tuple(cfg.img_shape), calibration)
            runs += [
                (
                    f"{name}, batch {batch}",
                    [f"--model_path={files[key]}", f"--runtime={runtime}", f"--precision={precision}"],
                )
                for name, key, runtime, precision in paths
                if key
            ]
        for index, (name, model_args) in enumerate(runs):
            start = time.perf_counter()
            stats = eval_script.main([*base, *model_args, f"--eval_output_dir={tmp}/eval{index}"])
            rows.append(
                [
                    name,
                    f"{stats['AP']:.4f}",
                    f"{stats['AP50']:.4f}",
                    f"{stats['AP75']:.4f}",
                    f"{time.perf_counter() - start:.1f}",
                ]
            )
    header = ["path", "mAP@[.5:.95]", "mAP@0.5", "mAP@0.75", "eval.py s (40 images + COCO)"]
    return (
        f"checkpoint {checkpoints[-1]}, INT8 calibrated on {len(calibration)} images of "
        f"{mindrecord}\n\n" + markdown_table(header, rows)
    )


def machine_notes():
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; features: {', '.join(cpu_features()) or 'none listed'}"
    )


def main(argv):
    import mindspore as ms
    from nasfpn.config.flat import load_config

    opts, rest = parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    import onnxruntime

    cfg = load_config(rest)
    precisions = openvino_precisions()
    paths = deployment_paths(precisions)
    versions = {"ONNX Runtime": onnxruntime.__version__}
    if precisions:
        import openvino

        versions["OpenVINO"] = openvino.__version__.split("-")[0]
    missing = (
        ""
        if precisions
        else " OpenVINO not installed (pip install -r requirements-openvino.txt): its paths are left out."
    )
    load_before = os.getloadavg()
    if opts["speed"]:
        table, notes = speed_table(cfg, opts, paths)
        body = (
            f"Deployment paths, {cfg.img_shape[0]}x{cfg.img_shape[1]}, best of {opts['rounds']} rounds; "
            "ONNX Runtime and OpenVINO threads: their default (one per physical core). "
            f"{machine_notes()}.{missing}\n\n" + table + f"\n\n{notes}\n\n"
            f"Load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load_before)} before, "
            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} after (other processes on the "
            "machine slow all paths alike)"
        )
        record("Deployment paths", body, __file__, argv, **versions)
    table = demo_map_table(opts["demo_dir"], opts, paths) if opts["demo_dir"] else None
    if opts["demo_dir"] and table is None:
        print(
            f"no checkpoint under {opts['demo_dir']}/ckpt/ckpt_0 (run scripts/run_demo.sh first): "
            "the mAP section is left as it was"
        )
    elif table is not None:
        body = "mAP of each path on the demo model (eval.py on the demo val set)" + missing + "\n\n" + table
        record("Deployment paths: mAP on the demo model", body, __file__, argv, **versions)


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
