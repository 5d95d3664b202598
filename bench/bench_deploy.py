"""Every deployment path side by side, in one run: the MindSpore cell, the MINDIR, the ONNX (fp32) and
the INT8 ONNX model: time per image at batch 1 and at larger batches, max |diff| vs the cell, and
(with --demo_dir) each path's COCO mAP on the demo model by eval.py.

    python bench/bench_deploy.py [--img_shape=[640,640]] [--batches=1,2] [--rounds=3]
        [--demo_dir=outputs/demo [--demo_checkpoint=CKPT]] [--no_speed]

Speed: the release network (or the config given) with random weights (speed does not depend on
them), the INT8 model calibrated on --calibration_images synthetic images (scales change values,
not speed). Each model gets an untimed warm-up; then the models take turns, --rounds times, so
load from other processes hits all alike; the table shows each model's best round.
mAP: the demo's checkpoint (configs/demo_cpu.yaml, <demo_dir>/ckpt/ckpt_0/*.ckpt) is exported to
MINDIR, ONNX and INT8 ONNX (calibrated on the demo's training MindRecord) and every path is evaluated
by eval.py's main() on the demo's val set.
"""
import glob
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import markdown_table, record  # noqa: E402

CALIBRATION_IMAGES = 8


def parse_args(argv):
    opts = {"batches": [1, 2], "rounds": 3, "demo_dir": "", "demo_checkpoint": "", "speed": True}
    rest = []
    for a in argv:
        key, _, value = a.partition("=")
        if key == "--batches":
            opts["batches"] = [int(b) for b in value.split(",")]
        elif key == "--rounds":
            opts["rounds"] = int(value)
        elif key == "--demo_dir":
            opts["demo_dir"] = value
        elif key == "--demo_checkpoint":  # another checkpoint of the demo network
            opts["demo_checkpoint"] = value
        elif key == "--no_speed":
            opts["speed"] = False
        else:
            rest.append(a)
    return opts, rest


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
    """{path name: model file} for one batch size: MINDIR, ONNX fp32, ONNX INT8."""
    from src.deploy.export import export_network
    from src.deploy.quantize import calibration_batches, int8_model_path, quantize_onnx_int8
    stem = os.path.join(folder, f"b{batch}")
    onnx = export_network(net, stem, "ONNX", batch, img_shape)
    return {"MINDIR": export_network(net, stem, "MINDIR", batch, img_shape),
            "ONNX fp32": onnx,
            "ONNX INT8": quantize_onnx_int8(onnx, int8_model_path(onnx),
                                            calibration_batches(calibration, batch))}


def speed_table(cfg, opts):
    from src.inference.build import build_inference_network
    from src.inference.runtimes import open_runtime
    img_shape = tuple(cfg.img_shape)
    net = build_inference_network(cfg)
    calibration = synthetic_images(CALIBRATION_IMAGES, img_shape, seed=1)
    runners = {}  # (path name, batch) -> runtime
    with tempfile.TemporaryDirectory() as tmp:
        for batch in opts["batches"]:
            runners[("MindSpore cell (graph mode)", batch)] = open_runtime(net)
            for name, path in export_all(net, tmp, batch, img_shape, calibration).items():
                runners[(name, batch)] = open_runtime(path)
        inputs = {b: np.stack(synthetic_images(b, img_shape, seed=2)) for b in opts["batches"]}
        outputs = {key: runtime(inputs[key[1]]) for key, runtime in runners.items()}  # warm-up
        best = {}
        for _ in range(opts["rounds"]):
            for key, runtime in runners.items():
                start = time.perf_counter()
                runtime(inputs[key[1]])
                per_image = (time.perf_counter() - start) / key[1]
                best[key] = min(best.get(key, per_image), per_image)
    cell_b1 = best[("MindSpore cell (graph mode)", opts["batches"][0])]
    rows = []
    for (name, batch), seconds in best.items():
        ref = outputs[("MindSpore cell (graph mode)", batch)]
        got = outputs[(name, batch)]
        diff = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
        # INT8 with random weights: scores sit at the class prior, the diff says nothing (see mAP).
        shown = "-" if "cell" in name else "(see mAP)" if "INT8" in name else f"{diff:.1e}"
        rows.append([name, batch, f"{seconds:.3f}", f"{seconds / cell_b1:.2f}x", shown])
    header = ["path", "batch", "s/img (best round)", f"vs cell, batch {opts['batches'][0]}",
              "max |diff| vs cell (boxes, scores)"]
    return markdown_table(header, rows)


def demo_map_table(demo_dir, opts):
    """Each path's COCO metrics on the demo model (eval.py main(), same post-processing)."""
    import eval as eval_script
    from src.config import load_config
    from src.inference.build import build_inference_network
    checkpoints = [opts["demo_checkpoint"]] if opts["demo_checkpoint"] else sorted(
        glob.glob(os.path.join(demo_dir, "ckpt", "ckpt_0", "retinanet-*_*.ckpt")), key=os.path.getmtime)
    if not checkpoints:
        return None
    base = ["--config_path=configs/demo_cpu.yaml"]
    cfg = load_config(base)
    # Calibrate on training images (the eval pipeline's preprocessing), not on the images scored.
    mindrecord = os.path.join(cfg.mindrecord_dir, "retinanet.mindrecord0")
    from src.deploy.quantize import calibration_images
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        net = build_inference_network(cfg, checkpoints[-1])
        calibration = calibration_images(mindrecord, cfg, cfg.calibration_images)
        models = {"MindSpore cell (checkpoint)": None}
        for batch in opts["batches"]:
            for name, path in export_all(net, tmp, batch, tuple(cfg.img_shape), calibration).items():
                models[f"{name}, batch {batch}"] = path
        for name, path in models.items():
            model_arg = f"--model_path={path}" if path else f"--checkpoint_path={checkpoints[-1]}"
            start = time.perf_counter()
            stats = eval_script.main([*base, model_arg, f"--eval_output_dir={tmp}/eval"])
            rows.append([name, f"{stats['AP']:.4f}", f"{stats['AP50']:.4f}", f"{stats['AP75']:.4f}",
                         f"{time.perf_counter() - start:.1f}"])
    header = ["path", "mAP@[.5:.95]", "mAP@0.5", "mAP@0.75", "eval.py s (40 images + COCO)"]
    return (f"checkpoint {checkpoints[-1]}, INT8 calibrated on {len(calibration)} images of "
            f"{mindrecord}\n\n" + markdown_table(header, rows))


def main(argv):
    import mindspore as ms
    from src.config import load_config
    opts, rest = parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    import onnxruntime
    cfg = load_config(rest)
    load_before = os.getloadavg()[0]
    if opts["speed"]:
        table = speed_table(cfg, opts)
        body = (f"Deployment paths, {cfg.img_shape[0]}x{cfg.img_shape[1]}, best of {opts['rounds']} rounds, "
                "ONNX Runtime intra-op threads: default (one per physical core)\n\n" + table
                + f"\n\n1-min load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
                "(other processes on the machine slow all paths alike)")
        record("Deployment paths", body, __file__, argv, **{"ONNX Runtime": onnxruntime.__version__})
    table = demo_map_table(opts["demo_dir"], opts) if opts["demo_dir"] else None
    if opts["demo_dir"] and table is None:
        print(f"no checkpoint under {opts['demo_dir']}/ckpt/ckpt_0 (run scripts/run_demo.sh first): "
              "the mAP section is left as it was")
    elif table is not None:
        body = "mAP of each path on the demo model (eval.py on the demo val set)\n\n" + table
        record("Deployment paths: mAP on the demo model", body, __file__, argv,
               **{"ONNX Runtime": onnxruntime.__version__})


if __name__ == "__main__":
    main(sys.argv[1:])
