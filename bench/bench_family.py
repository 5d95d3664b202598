"""The paper's family side by side, in one run: for each member (the release R-50 at 640, lighter
sizes, NAS-FPNLite on MobileNetV2) and each anytime exit of NAS-FPNLite: parameters, GFLOPs, CPU
latency at batch 1 (ONNX Runtime fp32, OpenVINO f32 and INT8), each against the release's INT8;
with --train_steps, AP on the embedded set after the same short training; and a plot of AP (or,
without training, GFLOPs) against latency.

    python bench/bench_family.py [--rounds=3] [--members=release,r50_384,demo,lite] [--no_exits]
        [--train_steps=N [--train_img=256]] [--plot=docs/images/family_latency.png]

Speed: random weights (speed does not depend on them); the INT8 model calibrated on 8 synthetic
images. Every model gets an untimed warm-up, then all models take turns for --rounds rounds, so
load from other processes hits all alike; the table shows each model's best round, and the ratio
column is what the target is stated in (NAS-FPNLite INT8 <= 0.10x the release's INT8).
FLOPs: 2 x the multiply-adds of the exported ONNX graph's Conv / MatMul / Gemm nodes (bench_deploy).
AP (--train_steps): every member is trained by train.py from scratch for the same number of steps on
the embedded shapes set (nasfpn/data/embedded.py) at --train_img pixels, NAS-FPNLite with deep
supervision, then evaluated by eval.py (each exit of NAS-FPNLite with --exit_stage).
"""

import gc
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.bench_deploy import (  # noqa: E402
    CALIBRATION_IMAGES,
    machine_notes,
    onnx_flops_per_image,
    openvino_precisions,
    synthetic_images,
    time_paths,
)
from bench.common import markdown_table, record  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LITE = "configs/nasfpnlite_mbv2_384.yaml"
MEMBERS = {  # key: (label, config overrides)
    "release": ("NAS-FPN R-50 7@256, 640 (release)", ()),
    "r50_384": ("NAS-FPN R-50 7@256, 384", ("--img_shape=[384,384]",)),
    "demo": ("NAS-FPN R-18 (demo network)", ("--config_path=configs/demo_cpu.yaml",)),
    "lite": ("NAS-FPNLite MobileNetV2 7@64, 384", (f"--config_path={LITE}",)),
}
PATHS = (("ONNX Runtime fp32", "onnx", "onnxruntime"), ("OpenVINO f32", "onnx", "openvino"),
         ("OpenVINO INT8", "int8", "openvino"))  # fmt: skip


def parse_args(argv):
    opts = {"rounds": 3, "members": list(MEMBERS), "exits": True, "train_steps": 0, "train_img": 256,
            "plot": "docs/images/family_latency.png"}  # fmt: skip
    for a in argv:
        key, _, value = a.partition("=")
        if key == "--rounds":
            opts["rounds"] = int(value)
        elif key == "--members":
            opts["members"] = value.split(",")
        elif key == "--no_exits":
            opts["exits"] = False
        elif key == "--train_steps":
            opts["train_steps"] = int(value)
        elif key == "--train_img":
            opts["train_img"] = int(value)
        elif key == "--plot":
            opts["plot"] = value
        else:
            raise SystemExit(f"unknown option {a}; see the docstring (python bench/bench_family.py --help)")
    unknown = [m for m in opts["members"] if m not in MEMBERS]
    if unknown:
        raise SystemExit(f"--members: unknown {unknown}; known: {list(MEMBERS)}")
    return opts


def variants(opts):
    """(row label, config overrides) of every model timed: the members, then NAS-FPNLite's exits."""
    rows = [MEMBERS[m] for m in opts["members"]]
    if opts["exits"] and "lite" in opts["members"]:
        rows += [
            (
                f"NAS-FPNLite exit {k}/7",
                (f"--config_path={LITE}", "--deep_supervision=True", f"--exit_stage={k}"),
            )
            for k in range(1, 7)
        ]
    return rows


def parameter_count(net):
    return sum(int(np.prod(p.shape)) for p in net.get_parameters() if "moving_" not in p.name)


def export_variant(cfg, folder, stem):
    """(parameters, {file key: ONNX fp32 / INT8 file}) of one model with random weights."""
    from nasfpn.deploy.export import export_network
    from nasfpn.deploy.quantize import calibration_batches, int8_model_path, quantize_onnx_int8
    from nasfpn.inference.build import build_inference_network

    net = build_inference_network(cfg)
    img_shape = tuple(cfg.img_shape)
    onnx = export_network(net, os.path.join(folder, stem), "ONNX", 1, img_shape)
    calibration = calibration_batches(synthetic_images(CALIBRATION_IMAGES, img_shape, seed=1), 1)
    files = {"onnx": onnx, "int8": quantize_onnx_int8(onnx, int8_model_path(onnx), calibration)}
    return parameter_count(net), files


def speed_rows(opts, precisions):
    from nasfpn.config.flat import load_config
    from nasfpn.inference.runtimes import open_runtime

    paths = [p for p in PATHS if p[2] == "onnxruntime" or "f32" in precisions]
    facts, runners, inputs = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, overrides) in enumerate(variants(opts)):
            cfg = load_config(list(overrides))
            count, files = export_variant(cfg, tmp, f"m{index}")
            facts[label] = (count, onnx_flops_per_image(files["onnx"]), tuple(cfg.img_shape))
            inputs[label] = np.stack(synthetic_images(1, tuple(cfg.img_shape), seed=2))
            for name, key, runtime in paths:
                runners[(label, name)] = open_runtime(files[key], 0, runtime, "f32")
            print(f"[bench_family] exported {label}", flush=True)
        best = {}
        for _ in range(opts["rounds"]):  # all models take turns each round
            for (label, name), runner in runners.items():
                seconds, _ = time_paths({(name, 1): runner}, {1: inputs[label]}, 1)
                best[(label, name)] = min(best.get((label, name), np.inf), seconds[(name, 1)])
        del runners
        gc.collect()
    return facts, best, [p[0] for p in paths]


def train_and_evaluate(opts, labels):
    """{row label: AP} after --train_steps steps of train.py on the embedded set, eval.py per exit."""
    from nasfpn.data.embedded import generate_embedded_dataset

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_embedded_dataset(os.path.join(tmp, "coco"), 64, 16, 128, seed=3)
        mindrecord = os.path.join(tmp, "mr")
        for split, data_type in (("train", "train2017"), ("val", "val2017")):
            run([sys.executable, "create_data.py", "--create_dataset=coco", f"--coco_root={root}",
                 f"--mindrecord_dir={mindrecord}", "--num_classes=4", f"--{split}_data_type={data_type}"])  # fmt: skip
        side = opts["train_img"]
        for key in opts["members"]:
            label, overrides = MEMBERS[key]
            ckpt = os.path.join(tmp, f"ckpt_{key}")
            common = [
                *overrides,
                f"--img_shape=[{side},{side}]",
                "--num_classes=4",
                f"--mindrecord_dir={mindrecord}",
            ]
            steps_per_epoch = 64 // 8
            run([sys.executable, "train.py", *common, "--batch_size=8", f"--save_checkpoint_path={ckpt}",
                 f"--epoch_size={max(1, opts['train_steps'] // steps_per_epoch)}", "--lr_scale_by_batch=false"]
                + (["--deep_supervision=True"] if key == "lite" else []))  # fmt: skip
            checkpoint = sorted(p for p in os.listdir(os.path.join(ckpt, "ckpt_0")) if p.endswith(".ckpt"))[
                -1
            ]
            exits = range(1, 8) if key == "lite" and opts["exits"] else [0]
            for k in exits:
                out = os.path.join(tmp, f"eval_{key}_{k}")
                run([sys.executable, "eval.py", f"--checkpoint_path={os.path.join(ckpt, 'ckpt_0', checkpoint)}",
                     f"--mindrecord_dir={mindrecord}", f"--eval_output_dir={out}", f"--exit_stage={k}",
                     f"--anno_path={root}/annotations/instances_val2017.json"])  # fmt: skip
                import json

                with open(os.path.join(out, "metrics.json")) as f:
                    ap = json.load(f)["AP"]
                row = label if k in (0, 7) else f"NAS-FPNLite exit {k}/7"
                results[row] = ap
    return results


def run(command):
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:2])} failed ({done.returncode}): {done.stderr[-1500:]}")


def plot(path, points, ylabel):
    """AP (or GFLOPs) against OpenVINO INT8 latency; the exits of one model on one curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    exits = [(x, y, k) for label, x, y, k in points if k]
    if exits:
        ax.plot([e[0] for e in exits], [e[1] for e in exits], "o-", label="NAS-FPNLite exits 1..7")
        for x, y, k in exits:
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for label, x, y, k in points:
        if not k:
            ax.plot([x], [y], "s")
            ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, parse_math=False
            )
    ax.set_xscale("log")
    ax.set_xlabel("OpenVINO INT8 latency, batch 1 (ms, log)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, path)


def main(argv):
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    opts = parse_args(argv)
    precisions = openvino_precisions()
    facts, best, path_names = speed_rows(opts, precisions)
    ap = train_and_evaluate(opts, list(facts)) if opts["train_steps"] else {}
    release_int8 = best.get((MEMBERS["release"][0], "OpenVINO INT8"))
    rows, points = [], []
    for label, (count, flops, shape) in facts.items():
        row = [label, f"{shape[0]}x{shape[1]}", f"{count / 1e6:.2f}", f"{flops / 1e9:.2f}"]
        row += [f"{best[(label, name)] * 1e3:.1f}" for name in path_names]
        int8 = best.get((label, "OpenVINO INT8"))
        row.append(f"{int8 / release_int8:.3f}x" if int8 and release_int8 else "-")
        row.append(f"{ap[label]:.3f}" if label in ap else "-")
        rows.append(row)
        if int8:
            exit_k = (
                int(label.split("exit ")[1].split("/")[0])
                if "exit" in label
                else (7 if "Lite" in label else 0)
            )
            points.append((label, int8 * 1e3, ap.get(label, flops / 1e9), exit_k))
    header = ["model", "input", "M params", "GFLOPs"] + [f"{n} ms" for n in path_names]
    header += ["INT8 vs release INT8", f"AP ({opts['train_steps']} steps)" if ap else "AP"]
    if opts["plot"]:
        plot(opts["plot"], points, "COCO AP (embedded set)" if ap else "GFLOPs per image")
    body = (
        f"The family at batch 1, best of {opts['rounds']} rounds (all models taking turns); random "
        f"weights, INT8 calibrated on {CALIBRATION_IMAGES} synthetic images. {machine_notes()}. "
        f"1-min load average at the end: {os.getloadavg()[0]:.1f}.\n\n"
        + markdown_table(header, rows)
        + (f"\n\nPlot: `{opts['plot']}`." if opts["plot"] else "")
    )
    record("The family", body, __file__, argv)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
