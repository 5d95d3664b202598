"""Fine-tuning on the embedded set: what a detector of other classes is worth as a starting point.

    python bench/bench_finetune.py [--work_dir=outputs/bench_finetune] [--source_epochs=8]
        [--arm_epochs=12] [--eval_every=1] [--images_a=320] [--images_b=160] [--val_images=40]

On configs/demo_cpu.yaml's network (ResNet-18, 2 stages of 64 channels, 128x128):
1. a source detector is trained on family A of the embedded set (circle, square, triangle);
2. three arms train family B (diamond, cross, star: new names) for the same steps and schedule,
   evaluated every `eval_every` epochs on B's val set:
   (a) from scratch (the release's initialisation);
   (b) fine-tuned from the source: --pre_trained --filter_weight=True (no class name is shared, so
       the class head keeps only its tower and background rows; the new classes start from the prior);
   (c) from the source's backbone alone, written as an ImageNet-style file in the MindSpore model
       zoo's ResNet-18 layout (names without `network.backbone.`, block BNs bn1d / bn2d, a
       classifier `end_point.*` and optimizer state beside them) and given as
       --backbone_pretrained; the neck and head initialised as in (a);
3. the kept-subset check: a run whose classes are two of A's by name plus a new one, at step 0,
   scores on A's val images exactly the source's per-class AP on the two.
Target: (b) reaches (a)'s final AP in at most a third of (a)'s steps.
"""

import json
import logging
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import markdown_table, record  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO_ROOT, "configs", "demo_cpu.yaml")
BATCH = 8
FAMILY_NAMES = {
    "A": ["background", "circle", "square", "triangle"],
    "B": ["background", "diamond", "cross", "star"],
}
# the kept-subset check: two of A's classes by name (in another order) and a new one
SUBSET_NAMES = ["background", "square", "hexagon", "circle"]
BACKBONE_PREFIX = "network.backbone."
DEFAULTS = {
    "work_dir": os.path.join("outputs", "bench_finetune"),
    "source_epochs": 8,
    "arm_epochs": 12,
    "eval_every": 1,
    "images_a": 320,
    "images_b": 160,
    "val_images": 40,
}


def parse_args(argv):
    args = dict(DEFAULTS)
    for a in argv:
        key, _, value = a.lstrip("-").partition("=")
        if key not in args:
            raise SystemExit(f"error: unknown option --{key}; known: {', '.join(sorted(args))}")
        args[key] = type(DEFAULTS[key])(value)
    return args


# ---- data -------------------------------------------------------------------------------------


def make_family(work_dir, family, num_train, num_val, seed):
    """The family's embedded set in COCO layout and its train / eval MindRecords."""
    from nasfpn.data.converters import Summary, coco_samples, write_mindrecord
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.data.layout import EVAL_PREFIX, TRAIN_PREFIX

    root = generate_embedded_dataset(
        os.path.join(work_dir, f"coco_{family}"), num_train, num_val, seed=seed, overwrite=True, family=family
    )
    out = os.path.join(work_dir, f"mindrecord_{family}")
    shutil.rmtree(out, ignore_errors=True)
    for split, prefix, training in (("train2017", TRAIN_PREFIX, True), ("val2017", EVAL_PREFIX, False)):
        write_mindrecord(
            coco_samples(
                os.path.join(root, "annotations", f"instances_{split}.json"),
                os.path.join(root, split),
                training,
                Summary(),
            ),
            out,
            prefix,
            num_shards=1,
            progress=False,
        )
    return root, out


def family_config(class_names, root, mindrecord, *extra):
    from nasfpn.config.flat import load_config

    return load_config(
        [
            f"--coco_root={root}",
            f"--mindrecord_dir={mindrecord}",
            f"--coco_classes={json.dumps(class_names)}",
            "--num_classes=4",
            f"--batch_size={BATCH}",
            "--log_interval=40",
            "--keep_checkpoint_max=1",
            *extra,
        ],
        config_path=DEMO_CONFIG,
    )


# ---- evaluation -------------------------------------------------------------------------------


def evaluate_detector(detector, cfg, anno_path, class_names, mindrecord):
    """COCO stats and per-class rows of `detector` on the eval MindRecord against `anno_path`."""
    from nasfpn.ops.boxes import Anchors
    from nasfpn.data.pipeline import create_eval_dataset
    from nasfpn.evaluation.scoring import DetectionCollector, run_network
    from nasfpn.inference.runtimes import open_runtime
    from nasfpn.model import RetinaNetInfer

    net = RetinaNetInfer(detector, Anchors(cfg.anchors.spec(cfg.model.img_shape)).cycxhw, cfg.prior_scaling)
    net.set_train(False)
    collector = DetectionCollector.from_sections(
        cfg.model, cfg.postprocess, anno_path, model_classes=class_names
    )
    run_network(
        open_runtime(net),
        create_eval_dataset(mindrecord, cfg.model.img_shape, cfg.num_parallel_workers),
        collector,
        progress=False,
    )
    stats = collector.evaluate()
    return stats, {row["name"]: row for row in collector.per_class}


def recording_evaluator(history, steps_per_eval):
    """make_evaluator for train_from_config that appends (step, AP, AP50) to `history`."""
    from nasfpn.data.converters import find_mindrecord
    from nasfpn.data.layout import annotation_path

    def make(cfg, prefix):
        mindrecord = find_mindrecord(cfg.mindrecord_dir, prefix)
        anno = annotation_path(cfg, cfg.val_data_type)

        def evaluate(detector):
            stats, _ = evaluate_detector(detector, cfg, anno, list(cfg.coco_classes), mindrecord)
            history.append(((len(history) + 1) * steps_per_eval, stats["AP"], stats["AP50"]))
            return stats["AP"]

        return evaluate

    return make


def train(cfg, log, history=None, steps_per_eval=0):
    from nasfpn.training.run import train_from_config

    make = recording_evaluator(history, steps_per_eval) if history is not None else None
    tick = time.perf_counter()
    result = train_from_config(cfg, log, make_evaluator=make)
    return result, time.perf_counter() - tick


# ---- the zoo-layout backbone file of arm (c) ---------------------------------------------------


def zoo_name(name):
    """Our backbone name as the zoo's ResNet-18/34 names it: a basic block's BNs are bn1d / bn2d."""
    return re.sub(r"^(layer[1-4]\.\d+)\.bn([12])\.", r"\1.bn\2d.", name)


def write_zoo_backbone(source_ckpt, path):
    """The source's backbone as the MindSpore model zoo's ResNet checkpoint lays it out: names
    without `network.backbone.`, plus a classifier and optimizer state (what such a file holds)."""
    import mindspore as ms
    import numpy as np

    params = ms.load_checkpoint(source_ckpt)
    entries = [
        {"name": zoo_name(name[len(BACKBONE_PREFIX) :]), "data": value}
        for name, value in params.items()
        if name.startswith(BACKBONE_PREFIX)
    ]
    entries += [
        {"name": f"moments.{e['name']}", "data": ms.Tensor(np.zeros(e["data"].shape, np.float32))}
        for e in entries
        if "moving_" not in e["name"]
    ]
    width = [e for e in entries if e["name"].startswith("layer4.")][-1]["data"].shape[0]
    entries += [
        {"name": "end_point.weight", "data": ms.Tensor(np.zeros((1000, width), np.float32))},
        {"name": "end_point.bias", "data": ms.Tensor(np.zeros(1000, np.float32))},
        {"name": "learning_rate", "data": ms.Tensor(np.float32(0.1))},
        {"name": "global_step", "data": ms.Tensor(np.array([0], np.int32))},
    ]
    ms.save_checkpoint(entries, path)
    return path


# ---- the kept-subset check --------------------------------------------------------------------


def subset_annotations(anno_path, names, path):
    """A's val annotations for the classes `names` (background first) with new category ids: the
    kept classes' boxes, none for the new class."""
    with open(anno_path) as f:
        coco = json.load(f)
    by_name = {c["name"]: c["id"] for c in coco["categories"]}
    new_id = {name: 100 + k for k, name in enumerate(names[1:])}
    coco["annotations"] = [
        dict(a, category_id=new_id[name])
        for a in coco["annotations"]
        for name, cid in by_name.items()
        if a["category_id"] == cid and name in new_id
    ]
    coco["categories"] = [{"id": new_id[n], "name": n, "supercategory": "shape"} for n in names[1:]]
    with open(path, "w") as f:
        json.dump(coco, f)
    return path


def evaluate_checkpoint(path, root, mindrecord_dir):
    """(stats, per-class rows) of a family-A checkpoint on A's val set."""
    from nasfpn.data.converters import find_mindrecord
    from nasfpn.data.layout import EVAL_PREFIX
    from nasfpn.inference.build import build_inference_network

    cfg = family_config(FAMILY_NAMES["A"], root, mindrecord_dir)
    detector = build_inference_network(cfg, path).network  # the checkpoint loaded strictly
    return evaluate_detector(
        detector,
        cfg,
        os.path.join(root, "annotations", "instances_val2017.json"),
        FAMILY_NAMES["A"],
        find_mindrecord(mindrecord_dir, EVAL_PREFIX),
    )


def kept_subset_check(source_ckpt, root_a, mr_a, work_dir, log):
    """Rows: class, source AP / AP50 on A's val, the step-0 fine-tune's, equal or not."""
    import mindspore as ms
    from nasfpn.data.converters import find_mindrecord
    from nasfpn.data.layout import EVAL_PREFIX
    from nasfpn.model_files.description import ModelDescription
    from nasfpn.training.trainer import Trainer

    mindrecord = find_mindrecord(mr_a, EVAL_PREFIX)
    anno = os.path.join(root_a, "annotations", "instances_val2017.json")
    _, source_rows = evaluate_checkpoint(source_ckpt, root_a, mr_a)
    ckpt_dir = os.path.join(work_dir, "subset_ckpt")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    run_cfg = family_config(
        SUBSET_NAMES,
        root_a,
        mr_a,
        f"--pre_trained={source_ckpt}",
        "--filter_weight=True",
        f"--save_checkpoint_path={ckpt_dir}",
    )
    ms.set_seed(run_cfg.seed)
    trainer = Trainer(
        run_cfg,
        1,
        log=log,
        description=ModelDescription.of_sections(run_cfg.model, run_cfg.anchors, SUBSET_NAMES),
    )
    trainer.restore()
    subset_anno = subset_annotations(anno, SUBSET_NAMES, os.path.join(work_dir, "subset_val.json"))
    _, rows = evaluate_detector(trainer.detector, run_cfg, subset_anno, SUBSET_NAMES, mindrecord)
    table = []
    for name in SUBSET_NAMES[1:]:
        if name not in source_rows:
            table.append([name, "-", f"- ({rows[name]['num_gt']} boxes)", "new class"])
            continue
        same = all(rows[name][k] == source_rows[name][k] for k in ("AP", "AP50", "AP75", "AR100"))
        table.append(
            [
                name,
                f"{source_rows[name]['AP']:.4f} / {source_rows[name]['AP50']:.4f}",
                f"{rows[name]['AP']:.4f} / {rows[name]['AP50']:.4f}",
                "yes, exactly" if same else "NO",
            ]
        )
    return table


# ---- the run ----------------------------------------------------------------------------------


def first_step_reaching(history, target):
    return next((step for step, ap, _ in history if ap >= target), None)


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    log = logging.getLogger("nasfpn")
    work = os.path.abspath(args["work_dir"])
    os.makedirs(work, exist_ok=True)
    tick = time.perf_counter()
    root_a, mr_a = make_family(work, "A", args["images_a"], args["val_images"], seed=0)
    root_b, mr_b = make_family(work, "B", args["images_b"], args["val_images"], seed=1)
    steps_a = args["images_a"] // BATCH
    steps_b = args["images_b"] // BATCH

    # 1. the source detector on family A (the demo's schedule, shortened)
    source_dir = os.path.join(work, "source")
    shutil.rmtree(source_dir, ignore_errors=True)
    cfg_a = family_config(
        FAMILY_NAMES["A"],
        root_a,
        mr_a,
        f"--epoch_size={args['source_epochs']}",
        f"--save_checkpoint_epochs={args['source_epochs']}",
        f"--save_checkpoint_path={source_dir}",
        "--eval_interval=0",
    )
    source_result, source_seconds = train(cfg_a, log)
    source_ckpt = source_result.last_checkpoint
    source_stats = evaluate_checkpoint(source_ckpt, root_a, mr_a)[0]

    # 2. the arms on family B, same steps and schedule (warm-up: phase 5 for one epoch, then cosine)
    zoo = write_zoo_backbone(source_ckpt, os.path.join(work, "resnet18_zoo_layout.ckpt"))
    arm_schedule = (
        f"--epoch_size={args['arm_epochs']}",
        f"--save_checkpoint_epochs={args['arm_epochs']}",
        f"--eval_interval={args['eval_every']}",
        "--warmup_epochs5=1",
    )
    arms = {}
    for arm, extra in (
        ("a", ()),
        ("b", (f"--pre_trained={source_ckpt}", "--filter_weight=True")),
        ("c", None),
    ):
        ckpt_dir = os.path.join(work, f"arm_{arm}")
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        if extra is None:  # (c): the zoo file as an ImageNet backbone, the rest initialised as (a)
            extra = (f"--backbone_pretrained={zoo}",)
        cfg = family_config(
            FAMILY_NAMES["B"], root_b, mr_b, *arm_schedule, f"--save_checkpoint_path={ckpt_dir}", *extra
        )
        history = []
        _, seconds = train(cfg, log, history, steps_b * args["eval_every"])
        arms[arm] = (history, seconds)

    subset = kept_subset_check(source_ckpt, root_a, mr_a, work, log)
    total = time.perf_counter() - tick

    # ---- the tables
    labels = {
        "a": "(a) from scratch",
        "b": "(b) fine-tuned from A's detector",
        "c": "(c) A's backbone as a zoo-layout file",
    }
    rows = []
    for k, (step, _, _) in enumerate(arms["a"][0]):
        rows.append([step] + [f"{arms[arm][0][k][1]:.3f} / {arms[arm][0][k][2]:.3f}" for arm in "abc"])
    final_a = arms["a"][0][-1][1]
    total_steps = arms["a"][0][-1][0]
    reach = first_step_reaching(arms["b"][0], final_a)
    verdict = (
        f"(b) reaches (a)'s final AP {final_a:.3f} at step {reach} of {total_steps} "
        f"({reach / total_steps:.2f} of the steps; target <= 1/3: "
        f"{'met' if reach <= total_steps / 3 else 'not met'})"
        if reach
        else f"(b) does not reach (a)'s final AP {final_a:.3f} within {total_steps} steps (target not met)"
    )
    lines = [
        f"`configs/demo_cpu.yaml`'s network (ResNet-18, 2 stages x 64 channels, 128x128), batch {BATCH}. "
        f"Source: {args['images_a']} family-A images (circle, square, triangle), "
        f"{args['source_epochs'] * steps_a} steps, val AP {source_stats['AP']:.3f} / AP50 "
        f"{source_stats['AP50']:.3f} ({source_seconds:.0f} s). Arms: {args['images_b']} family-B images "
        f"(diamond, cross, star: no name shared), {total_steps} steps each ({args['arm_epochs']} epochs, "
        "warm-up 1 epoch then the cosine, lr 0.04), AP / AP50 on B's "
        f"{args['val_images']} val images:",
        markdown_table(["step"] + [labels[a] for a in "abc"], rows),
        verdict + ".",
        "Training time per arm: "
        + ", ".join(f"{labels[a]} {arms[a][1]:.0f} s" for a in "abc")
        + f" (with the evaluations); whole benchmark {total / 60:.1f} min; "
        f"1-min load average at the end {os.getloadavg()[0]:.2f}.",
        "(b) is `--pre_trained=<A's checkpoint> --filter_weight=True`: every weight but the final class "
        "conv's rows is A's; with no class name shared only the background's rows are kept. (c) is "
        "`--backbone_pretrained=<A's backbone in the zoo's ResNet-18 layout>` (names without "
        "`network.backbone.`, block BNs `bn1d` / `bn2d`, a 1000-class `end_point.*` and optimizer "
        "state beside them), the neck and head initialised as in (a).",
        "### Kept classes at step 0",
        f"Classes {SUBSET_NAMES[1:]} (two of A's by name, reordered, and a new one) from A's "
        "detector, before any training step, on A's val images (the new class has no boxes):",
        markdown_table(["class", "source AP / AP50", "step-0 fine-tune AP / AP50", "equal"], subset),
    ]
    record("Fine-tuning", "\n\n".join(lines), __file__, argv)


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
