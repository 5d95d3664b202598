"""Training data pipeline speed: images/s per worker, share of time per stage, anchor matching.

    python bench/bench_data.py [--images 48] [--size 480] [--img_shape 640] [--boxes 20]

Builds a small embedded-shapes set (images of --size pixels, like a COCO image's long side),
converts it to MindRecord, then measures
  1. each stage of the training transform on one core (decode, IoU crop, resize, flip, colour
     jitter, normalise+CHW, anchor matching+encoding), with the same functions train_transform uses;
  2. the MindDataset training pipeline end to end with 1 and 2 workers (images/s per worker);
  3. anchor matching for one image with --boxes boxes at the release anchors (640x640: 76725),
     pruned AnchorMatcher (window + area bound) vs the release's full-IoU loop (reference in tests/test_anchors_and_coding.py).
The acceptance target for 3 is < 2 ms on one core.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GLOG_v", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import markdown_table, record, timeit  # noqa: E402


def build_records(root, images, size):
    from nasfpn.data.converters import Summary, coco_samples, write_mindrecord
    from nasfpn.data.embedded import generate_embedded_dataset

    coco = generate_embedded_dataset(
        os.path.join(root, "coco"), num_train=images, num_val=1, size=size, seed=0
    )
    samples = coco_samples(
        os.path.join(coco, "annotations", "instances_train2017.json"),
        os.path.join(coco, "train2017"),
        True,
        Summary(),
    )
    first, _ = write_mindrecord(
        samples, os.path.join(root, "mr"), "retinanet.mindrecord", num_shards=1, progress=False
    )
    return first


def read_records(path):
    import mindspore.dataset as ds

    data = ds.MindDataset(path, columns_list=["img_id", "image", "annotation"], shuffle=False)
    return [
        (r["image"].tobytes(), r["annotation"])
        for r in data.create_dict_iterator(output_numpy=True, num_epochs=1)
    ]


def stage_times(records, img_shape, matcher, rounds=2):
    """Seconds per image of each stage, single thread, same order as transforms.train_transform."""
    from nasfpn.data import transforms as T

    totals = dict.fromkeys(
        ["decode", "IoU crop", "resize", "flip", "colour jitter", "normalise + CHW", "match + encode"], 0.0
    )
    rng = np.random.default_rng(0)
    count = 0
    for _ in range(rounds):
        for encoded, annotation in records:
            marks = [time.perf_counter()]
            image = T.decode_image(encoded)
            marks.append(time.perf_counter())
            image, boxes, labels = T.random_iou_crop(
                image, annotation[:, :4].astype(np.float32), annotation[:, 4], rng
            )
            marks.append(time.perf_counter())
            height, width = image.shape[:2]
            image = cv2.resize(image, (img_shape[1], img_shape[0]), interpolation=cv2.INTER_LINEAR)
            boxes = boxes / np.array([height, width, height, width], np.float32)
            marks.append(time.perf_counter())
            if rng.random() < 0.5:
                image, boxes = T.horizontal_flip(image, boxes)
            marks.append(time.perf_counter())
            image = T.color_jitter(image, rng)
            marks.append(time.perf_counter())
            T.normalize_chw(image)
            marks.append(time.perf_counter())
            matcher.encode(np.clip(boxes, 0, 1).astype(np.float32), labels)
            marks.append(time.perf_counter())
            for key, a, b in zip(totals, marks[:-1], marks[1:]):
                totals[key] += b - a
            count += 1
    return {k: v / count for k, v in totals.items()}


def pipeline_rate(path, cfg, workers, batch_size=4, epochs=2):
    from nasfpn.data.pipeline import create_train_dataset

    data = create_train_dataset(
        path,
        cfg.data,
        cfg.augmentation,
        cfg.anchors,
        cfg.model.img_shape,
        batch_size,
        num_parallel_workers=workers,
        seed=0,
    )
    it = data.create_tuple_iterator(output_numpy=True, num_epochs=epochs + 1)
    for _ in it:  # warm-up epoch (thread start-up, first decode)
        pass
    start = time.perf_counter()
    images = 0
    for _ in range(epochs):
        for batch in it:
            images += len(batch[0])
    return images / (time.perf_counter() - start)


def matching_times(num_boxes, repeat=50):
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from tests.test_anchors_and_coding import random_boxes, reference_encode
    from tests.conftest import make_config

    cfg = make_config()
    anchors = Anchors(cfg.anchors.spec(cfg.model.img_shape))
    matcher = AnchorMatcher(anchors, 0.5, (0.1, 0.2))
    boxes, labels = random_boxes(np.random.default_rng(0), num_boxes)
    fast = timeit(lambda: matcher.encode(boxes, labels), repeat=repeat, warmup=3)
    match_only = timeit(lambda: matcher.match(boxes), repeat=repeat, warmup=3)
    loop = timeit(lambda: reference_encode(boxes, labels, anchors.corners, anchors.cycxhw), repeat=5)
    same = all(
        np.array_equal(a, b)
        for a, b in zip(
            matcher.encode(boxes, labels)[:2],
            reference_encode(boxes, labels, anchors.corners, anchors.cycxhw)[:2],
        )
    )
    return len(anchors), fast, match_only, loop, same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=480, help="side of the generated images")
    parser.add_argument("--img_shape", type=int, default=640, help="network input side")
    parser.add_argument("--boxes", type=int, default=20)
    args = parser.parse_args(argv)
    from nasfpn.ops.boxes import AnchorMatcher, Anchors
    from tests.conftest import make_config

    cfg = make_config(f"--img_shape=[{args.img_shape},{args.img_shape}]", "--num_classes=4")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as root:
        path = build_records(root, args.images, args.size)
        records = read_records(path)
        matcher = AnchorMatcher(
            Anchors(cfg.anchors.spec(cfg.model.img_shape)), cfg.match_threshold, cfg.prior_scaling
        )
        stages = stage_times(records, (args.img_shape, args.img_shape), matcher)
        rates = {w: pipeline_rate(path, cfg, w) for w in (1, 2)}
    total = sum(stages.values())
    parts = [
        f"Training transform per image, one core: {args.size}x{args.size} JPEG -> "
        f"{args.img_shape}x{args.img_shape}, {len(records)} images x 2 passes"
    ]
    rows = [[k, f"{v * 1000:.2f}", f"{100 * v / total:.0f}%"] for k, v in stages.items()]
    rows.append(["**total**", f"{total * 1000:.2f}", f"{1 / total:.0f} img/s"])
    parts.append(markdown_table(["stage", "ms / image", "share"], rows))
    parts.append("MindDataset training pipeline (decode, augment, match, batch 4), end to end")
    parts.append(
        markdown_table(
            ["workers", "images/s", "images/s per worker"],
            [[w, f"{r:.1f}", f"{r / w:.1f}"] for w, r in rates.items()],
        )
    )
    num_anchors, fast, match_only, loop, same = matching_times(args.boxes)
    parts.append(
        f"Anchor matching, one image with {args.boxes} boxes, {num_anchors} anchors "
        f"(640x640 release), one core; target < 2 ms"
    )
    parts.append(
        markdown_table(
            ["implementation", "best ms", "median ms", "bit-identical to the release loop"],
            [
                [
                    "pruned AnchorMatcher.match",
                    f"{match_only[0] * 1000:.2f}",
                    f"{match_only[1] * 1000:.2f}",
                    "",
                ],
                [
                    "pruned AnchorMatcher.encode (match + targets)",
                    f"{fast[0] * 1000:.2f}",
                    f"{fast[1] * 1000:.2f}",
                    "yes" if same else "**NO**",
                ],
                [
                    "release loop over all anchors",
                    f"{loop[0] * 1000:.2f}",
                    f"{loop[1] * 1000:.2f}",
                    "reference",
                ],
            ],
        )
    )
    record("Data pipeline", "\n\n".join(parts), __file__, argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
