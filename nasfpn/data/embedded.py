"""The embedded default dataset: coloured shapes on textured backgrounds, in COCO layout.

    python -m nasfpn.data.embedded --out DIR [--num_train 160] [--num_val 40] [--size 256] [--seed 0]
                                [--family A|B]

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

from nasfpn.core.errors import UserFileExistsError
from nasfpn.ops.boxes import box_area, box_intersection

CATEGORIES = (  # (id, name, base RGB colour)
    (1, "circle", (220, 60, 50)),
    (2, "square", (50, 170, 70)),
    (3, "triangle", (60, 90, 220)),
)
# Family B: other shapes, colours and names on the same backgrounds, for fine-tuning from a
# detector of family A (bench/bench_finetune.py). The same seed draws the same layout of boxes.
CATEGORIES_B = (
    (1, "diamond", (230, 190, 40)),
    (2, "cross", (170, 60, 200)),
    (3, "star", (40, 200, 200)),
)
FAMILIES = {"A": CATEGORIES, "B": CATEGORIES_B}


def _background(rng, size):
    """Smooth random colour field plus fine noise: textured but not confusable with shapes."""
    coarse = rng.uniform(60, 200, (4, 4, 3)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 12, (size, size, 3)).astype(np.float32)
    return np.clip(field * 0.6 + noise + 40, 0, 255)


def _draw(image, cat_index, box, rng, family="A"):
    """Draw category `cat_index` of `family` filling box (x1, y1, x2, y2) and return the tight box
    drawn."""
    x1, y1, x2, y2 = box
    colour = np.clip(np.array(FAMILIES[family][cat_index][2]) + rng.integers(-25, 26, 3), 0, 255)
    colour = tuple(int(c) for c in colour)
    if family == "B":
        return _draw_family_b(image, cat_index, box, colour)
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


def _draw_family_b(image, cat_index, box, colour):
    """Diamond, cross (a plus sign of bars a third of the box wide) or five-pointed star, each
    touching all four sides of the box, so the box is tight."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    if cat_index == 0:
        points = np.array([[cx, y1], [x2 - 1, cy], [cx, y2 - 1], [x1, cy]], np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    elif cat_index == 1:
        bar_w, bar_h = max((x2 - x1) // 3, 1), max((y2 - y1) // 3, 1)
        cv2.rectangle(image, (cx - bar_w // 2, y1), (cx + bar_w // 2, y2 - 1), colour, -1)
        cv2.rectangle(image, (x1, cy - bar_h // 2), (x2 - 1, cy + bar_h // 2), colour, -1)
    else:
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        xs, ys = np.cos(angles) * radius, np.sin(angles) * radius
        # scaled so the outer points reach the box's edges
        xs = x1 + (xs - xs.min()) / (xs.max() - xs.min()) * (x2 - 1 - x1)
        ys = y1 + (ys - ys.min()) / (ys.max() - ys.min()) * (y2 - 1 - y1)
        cv2.fillPoly(image, [np.stack([xs, ys], 1).round().astype(np.int32)], colour, cv2.LINE_AA)
    return (x1, y1, x2, y2)


def _overlaps_too_much(box, placed, limit=0.3):
    """Whether `box` covers more than `limit` of a placed box or a placed box more than `limit` of it."""
    if not placed:
        return False
    inter = box_intersection(np.array([box]), np.array(placed))[0]
    smaller = np.minimum(box_area(np.array(box)), box_area(np.array(placed)))
    return bool((inter > limit * smaller).any())


def make_image(rng, size, family="A"):
    """One image (RGB uint8) and its objects [(category index, (x1, y1, x2, y2))] of `family`."""
    image = _background(rng, size)
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            side = rng.uniform(0.15, 0.6) * size
            aspect = rng.uniform(0.7, 1.4)
            w, h = int(side * aspect**0.5), int(side / aspect**0.5)
            w, h = min(w, size - 2), min(h, size - 2)
            x1, y1 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            box = (x1, y1, x1 + w, y1 + h)
            if not _overlaps_too_much(box, [b for _, b in objects]):
                cat = int(rng.integers(len(FAMILIES[family])))
                objects.append((cat, _draw(image, cat, box, rng, family)))
                break
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _write_split(root, split, count, size, rng, first_id, family="A"):
    image_dir = os.path.join(root, split)
    os.makedirs(image_dir)
    images, annotations = [], []
    for k in range(count):
        image_id = first_id + k
        image, objects = make_image(rng, size, family)
        file_name = f"{image_id:012d}.jpg"
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        assert ok
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(encoded.tobytes())
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for cat, (x1, y1, x2, y2) in objects:
            annotations.append(
                {
                    "id": len(annotations) + first_id * 10,
                    "image_id": image_id,
                    "category_id": FAMILIES[family][cat][0],
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float((x2 - x1) * (y2 - y1)),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": cid, "name": name, "supercategory": "shape"} for cid, name, _ in FAMILIES[family]]
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def generate_embedded_dataset(
    out_dir, num_train=160, num_val=40, size=256, seed=0, overwrite=False, family="A"
):
    """Write the dataset under out_dir (atomically: built in a temporary folder, then renamed).
    `family`: "A" (circle, square, triangle) or "B" (diamond, cross, star)."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {sorted(FAMILIES)}, got {family!r}")
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
        _write_split(tmp, "train2017", num_train, size, rng, first_id=1, family=family)
        _write_split(tmp, "val2017", num_val, size, rng, first_id=100001, family=family)
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
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default="A",
        help="A: circle, square, triangle; B: diamond, cross, star",
    )
    args = parser.parse_args(argv)
    path = generate_embedded_dataset(
        args.out, args.num_train, args.num_val, args.size, args.seed, args.overwrite, args.family
    )
    print(
        f"embedded dataset (family {args.family}): {args.num_train} train + {args.num_val} val "
        f"images in {path}"
    )


if __name__ == "__main__":
    from nasfpn.core.exits import run_entry_point

    run_entry_point(main)
