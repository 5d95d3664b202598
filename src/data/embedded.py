"""The embedded default dataset: coloured shapes on textured backgrounds, in COCO layout.

    python -m src.data.embedded --out DIR [--num_train 160] [--num_val 40] [--size 256] [--seed 0]

writes DIR/train2017/*.jpg, DIR/val2017/*.jpg and DIR/annotations/instances_{train,val}2017.json,
so `create_data.py --create_dataset=coco --coco_root=DIR` converts it like COCO. The same seed gives
byte-identical files. Each class has its own shape and colour family, so a small detector can learn
it in minutes, but sizes, positions, backgrounds, tints and partial overlaps vary.
"""
import argparse
import json
import os
import shutil
import tempfile

import cv2
import numpy as np

from ..errors import UserFileExistsError
from ..boxes import box_area, box_intersection

CATEGORIES = (  # (id, name, base RGB colour)
    (1, "circle", (220, 60, 50)),
    (2, "square", (50, 170, 70)),
    (3, "triangle", (60, 90, 220)),
)


def _background(rng, size):
    """Smooth random colour field plus fine noise: textured but not confusable with shapes."""
    coarse = rng.uniform(60, 200, (4, 4, 3)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 12, (size, size, 3)).astype(np.float32)
    return np.clip(field * 0.6 + noise + 40, 0, 255)


def _draw(image, cat_index, box, rng):
    """Draw category `cat_index` filling box (x1, y1, x2, y2) and return the tight box drawn."""
    x1, y1, x2, y2 = box
    colour = np.clip(np.array(CATEGORIES[cat_index][2]) + rng.integers(-25, 26, 3), 0, 255)
    colour = tuple(int(c) for c in colour)
    if cat_index == 0:
        centre = ((x1 + x2) // 2, (y1 + y2) // 2)
        axes = ((x2 - x1) // 2, (y2 - y1) // 2)
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
        return (centre[0] - axes[0], centre[1] - axes[1], centre[0] + axes[0], centre[1] + axes[1])
    if cat_index == 1:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
        return (x1, y1, x2, y2)
    points = np.array([[(x1 + x2) // 2, y1], [x1, y2 - 1], [x2 - 1, y2 - 1]], np.int32)
    cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    return (x1, y1, x2, y2)


def _overlaps_too_much(box, placed, limit=0.3):
    """Whether `box` covers more than `limit` of a placed box or a placed box more than `limit` of it."""
    if not placed:
        return False
    inter = box_intersection(np.array([box]), np.array(placed))[0]
    smaller = np.minimum(box_area(np.array(box)), box_area(np.array(placed)))
    return bool((inter > limit * smaller).any())


def make_image(rng, size):
    """One image (RGB uint8) and its objects [(category index, (x1, y1, x2, y2))]."""
    image = _background(rng, size)
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            side = rng.uniform(0.15, 0.6) * size
            aspect = rng.uniform(0.7, 1.4)
            w, h = int(side * aspect ** 0.5), int(side / aspect ** 0.5)
            w, h = min(w, size - 2), min(h, size - 2)
            x1, y1 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            box = (x1, y1, x1 + w, y1 + h)
            if not _overlaps_too_much(box, [b for _, b in objects]):
                cat = int(rng.integers(len(CATEGORIES)))
                objects.append((cat, _draw(image, cat, box, rng)))
                break
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _write_split(root, split, count, size, rng, first_id):
    image_dir = os.path.join(root, split)
    os.makedirs(image_dir)
    images, annotations = [], []
    for k in range(count):
        image_id = first_id + k
        image, objects = make_image(rng, size)
        file_name = f"{image_id:012d}.jpg"
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(encoded.tobytes())
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for cat, (x1, y1, x2, y2) in objects:
            annotations.append({"id": len(annotations) + first_id * 10, "image_id": image_id,
                                "category_id": CATEGORIES[cat][0],
                                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0})
    categories = [{"id": cid, "name": name, "supercategory": "shape"} for cid, name, _ in CATEGORIES]
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def generate_embedded_dataset(out_dir, num_train=160, num_val=40, size=256, seed=0, overwrite=False):
    """Write the dataset under out_dir (atomically: built in a temporary folder, then renamed)."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not overwrite:
            raise UserFileExistsError(f"{out_dir} already exists; pass overwrite=True (--overwrite)")
        shutil.rmtree(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".embedded-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, "annotations"))
        rng = np.random.default_rng(seed)
        _write_split(tmp, "train2017", num_train, size, rng, first_id=1)
        _write_split(tmp, "val2017", num_val, size, rng, first_id=100001)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the embedded shapes dataset (COCO layout).")
    parser.add_argument("--out", required=True, help="output directory (must not exist)")
    parser.add_argument("--num_train", type=int, default=160)
    parser.add_argument("--num_val", type=int, default=40)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    path = generate_embedded_dataset(args.out, args.num_train, args.num_val, args.size, args.seed,
                                     args.overwrite)
    print(f"embedded dataset: {args.num_train} train + {args.num_val} val images in {path}")


if __name__ == "__main__":
    from ..cli import run_entry_point
    run_entry_point(main)
