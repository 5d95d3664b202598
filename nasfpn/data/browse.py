"""Look at the training data as the network sees it: each image after the training augmentation
(IoU crop, resize, flip, colour jitter - or, with --scale_jitter, the jittered resize, crop, flip,
colour jitter and padding - drawn from the same per-image random stream as training for
--browse_epoch) with its ground-truth boxes and class names drawn on it.

    python -m nasfpn.data.browse --mindrecord_dir=DIR [--browse_from=mindrecord|coco]
        [--coco_root=COCO] [--browse_images=16] [--browse_epoch=0] [--browse_output_dir=DIR]

From the training MindRecord (the default) or straight from a COCO-format annotation file
(--anno_path, else coco_root's train split; images in --train_image_dir, else --image_dir, else
coco_root/<train split>, as create_data.py finds them), converted in memory the way create_data.py
converts it, so a bad annotation or augmentation is seen before training on it. Boxes carry the
dataset's class names: the MindRecord's dataset record (nasfpn/data/dataset_record.py), or the
annotation file's by the rule create_data.py uses. Writes <img_id>_e<epoch>.jpg per image.
"""

import os

import numpy as np

from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.core.pictures import draw_labelled_boxes, write_image_atomic

BOX_COLOUR = (0, 220, 0)  # BGR


def mindrecord_records(mindrecord):
    """(img_id, encoded image, annotation rows (N, 5) y1 x1 y2 x2 class) of a MindRecord."""
    from mindspore.mindrecord import FileReader

    try:
        reader = FileReader(mindrecord, columns=["img_id", "image", "annotation"])
    except RuntimeError as exc:
        raise UserError(
            f"{mindrecord}: not a readable MindRecord dataset ({str(exc).strip().splitlines()[0]})"
        ) from None
    try:
        for row in reader.get_next():
            yield (
                int(row["img_id"][0]),
                bytes(row["image"]),
                np.asarray(row["annotation"], np.int32).reshape(-1, 5),
            )
    finally:
        reader.close()


def coco_folder_records(data, coco_classes) -> tuple:
    """(records create_data.py would write for the training split of the data section, class
    names, what they are from): the annotation file and image folder create_data.py would take."""
    from nasfpn.data.coco_format import class_map, load_coco_json
    from nasfpn.data.converters import Summary, _records, coco_samples
    from nasfpn.data.layout import annotation_path, image_folder

    image_dir, named_by = image_folder(data, True)
    if not os.path.isdir(image_dir):
        raise UserFileNotFoundError(f"image folder not found: {image_dir} ({named_by})")
    anno_path = annotation_path(data, data.train_data_type)
    names = list(class_map(load_coco_json(anno_path), coco_classes).names)
    samples = coco_samples(
        anno_path,
        image_dir,
        True,
        Summary(),
        coco_classes,
        data.empty_images,
        data.allow_outside_image_dir,
    )

    def records():
        for row in _records(samples, Summary(), False, ""):
            yield int(row["img_id"][0]), bytes(row["image"]), row["annotation"]

    return records(), names, f"{anno_path} (images in {image_dir})"


def mindrecord_source(data, model) -> tuple:
    """(records, class names, what they are from) of the training MindRecord: the names its
    dataset record carries, else (an older MindRecord) coco_classes when it has num_classes names,
    else numbers."""
    from nasfpn.data.converters import find_mindrecord
    from nasfpn.data.dataset_record import read_dataset_record
    from nasfpn.data.layout import TRAIN_PREFIX

    try:
        mindrecord = find_mindrecord(data.mindrecord_dir, data.prefix or TRAIN_PREFIX)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(
            f"{exc} (create it with create_data.py, or browse an annotation file "
            "with --browse_from=coco --anno_path=JSON --train_image_dir=DIR)"
        ) from None
    record = read_dataset_record(mindrecord)
    if record is not None and record.class_names is not None:
        return mindrecord_records(mindrecord), list(record.class_names), f"{mindrecord} ({record.describe()})"
    num_classes = record.num_classes if record is not None else model.num_classes
    return mindrecord_records(mindrecord), fallback_names(model.coco_classes, num_classes), mindrecord


def fallback_names(coco_classes: list, num_classes: int) -> list:
    if len(coco_classes) == num_classes:
        return list(coco_classes)
    return ["background"] + [str(i) for i in range(1, num_classes)]


def augmented_view(augmentation, img_shape, seed, img_id, encoded, rows, epoch):
    """(HWC float32 RGB image at img_shape, boxes (N, 4) normalised y1 x1 y2 x2 clipped to the
    image, labels) exactly as training with the augmentation section and `seed` draws them for
    this image and epoch (the random stream of nasfpn/data/pipeline.py, the boxes the anchor
    matcher is given)."""
    from nasfpn.data.pipeline import augmentation_rng
    from nasfpn.data.transforms import ScaleJitter, augment_sample, decode_image

    rng = augmentation_rng(seed, img_id, epoch)
    image, boxes, labels = augment_sample(
        decode_image(encoded),
        rows[:, :4].astype(np.float32),
        rows[:, 4],
        tuple(img_shape),
        rng,
        bool(augmentation.train_random_crop),
        ScaleJitter.from_section(augmentation),
    )
    return image, np.clip(boxes, 0, 1).astype(np.float32), labels


def draw_boxes(image_rgb, boxes_yx, labels, names):
    """A BGR copy of the image with each (y1, x1, y2, x2) pixel box and its class name."""
    import cv2

    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    texts, boxes = [], []
    for (y1, x1, y2, x2), label in zip(boxes_yx, labels):
        name = names[int(label)] if 0 <= int(label) < len(names) else str(int(label))
        texts.append(name)
        boxes.append((x1, y1, x2, y2))
    # names after every box, none hiding another (nasfpn/core/labels.py)
    return draw_labelled_boxes(canvas, boxes, texts, [BOX_COLOUR] * len(texts), 1, 0.35)


def browse(model, augmentation, seed, records, output_dir, count, epoch, names=None) -> list:
    """Write the first `count` records' augmented views (at the model section's img_shape) into
    output_dir, boxes named by `names` (class names by index; None: fallback_names); returns the
    paths."""
    names = names or fallback_names(model.coco_classes, model.num_classes)
    written = []
    for img_id, encoded, rows in records:
        if len(written) >= count:
            break
        image, boxes, labels = augmented_view(
            augmentation, model.img_shape, seed, img_id, encoded, rows, epoch
        )
        height, width = image.shape[:2]
        pixels = boxes * np.array([height, width, height, width], np.float32)
        picture = draw_boxes(np.clip(image, 0, 255).astype(np.uint8), pixels, labels, names)
        path = os.path.join(output_dir, f"{img_id}_e{epoch}.jpg")
        written.append(write_image_atomic(path, picture))
    return written


def main(argv=None):
    from nasfpn.config.flat import load_config

    return run(load_config(argv))


def run(cfg) -> list:
    """Browse what the config names (the module docstring); returns the paths written."""
    data, augmentation = cfg.data, cfg.augmentation
    if augmentation.browse_from == "coco":
        records, names, source = coco_folder_records(data, cfg.model.coco_classes)
    else:
        records, names, source = mindrecord_source(data, cfg.model)
    written = browse(
        cfg.model,
        augmentation,
        data.seed,
        records,
        augmentation.browse_output_dir,
        augmentation.browse_images,
        augmentation.browse_epoch,
        names,
    )
    print(
        f"{len(written)} augmented training images (epoch {augmentation.browse_epoch}) of {source} in "
        f"{os.path.abspath(augmentation.browse_output_dir)}"
    )
    return written


if __name__ == "__main__":
    from nasfpn.core.exits import run_entry_point

    run_entry_point(main)
