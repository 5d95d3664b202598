"""Network outputs -> COCO detections -> metrics; shared by eval.py, postprocess.py and training."""
import os
import time

from ..atomic import write_json_atomic
from ..data.coco_format import AnnotationError, check_num_classes, class_map, load_coco_json
from ..errors import UserError
from ..inference.detections import detections_to_coco, postprocess_image
from ..inference.runtimes import run_padded
from .coco_metrics import coco_evaluate


class DetectionCollector:
    """Accumulate per-image outputs as COCO result entries."""

    def __init__(self, anno_path, num_classes, min_score=0.1, nms_threshold=0.6, max_boxes=100,
                 coco_classes=None):
        self.anno_path = anno_path
        self.coco = load_coco_json(anno_path)
        cmap = class_map(self.coco, coco_classes)  # the rule create_data.py used
        check_num_classes(cmap, num_classes, anno_path)
        self.to_category = cmap.class_to_category
        self.params = dict(min_score=min_score, nms_threshold=nms_threshold, max_boxes=max_boxes)
        self.detections = []
        self.image_ids = []

    @classmethod
    def from_config(cls, cfg, anno_path):
        return cls(anno_path, cfg.num_classes, cfg.min_score, cfg.nms_threshold, cfg.max_boxes,
                   cfg.coco_classes)

    def add(self, image_id, boxes, scores, image_hw):
        """boxes (A, 4) normalised y1x1y2x2, scores (A, C), image_hw the original (h, w)."""
        kept = postprocess_image(boxes, scores, image_hw, **self.params)
        self.detections += detections_to_coco(image_id, *kept, self.to_category)
        self.image_ids.append(int(image_id))

    def evaluate(self, output_dir=None):
        """COCO metrics; when output_dir is given writes predictions.json and metrics.json there."""
        stats, _ = coco_evaluate(self.coco, self.detections, self.image_ids)
        if output_dir:
            write_json_atomic(os.path.join(output_dir, "predictions.json"), self.detections)
            write_json_atomic(os.path.join(output_dir, "metrics.json"),
                              {"anno_path": os.path.abspath(self.anno_path),
                               "num_images": len(self.image_ids), **self.params, **stats})
        return stats


MISSING_IDS_SHOWN = 5


def mindrecord_image_ids(mindrecord):
    """The img_id of every record of a MindRecord dataset (all shards), without decoding images."""
    from mindspore.mindrecord import FileReader
    try:
        reader = FileReader(mindrecord, columns=["img_id"])
    except RuntimeError as exc:  # MindSpore's message names the missing/corrupt part
        raise UserError(f"{mindrecord}: not a readable MindRecord dataset "
                        f"({str(exc).strip().splitlines()[0]}); create it again with "
                        "create_data.py") from None
    try:
        return [int(row["img_id"][0]) for row in reader.get_next()]
    finally:
        reader.close()


def check_annotations_cover(coco, anno_path, image_ids, source):
    """Raise AnnotationError unless every id of `image_ids` (the images of `source`) is an image of
    the annotation file: checked before inference, not found by pycocotools after it."""
    known = {image["id"] for image in coco["images"]}
    missing = sorted(set(image_ids) - known)
    if missing:
        shown = ", ".join(str(i) for i in missing[:MISSING_IDS_SHOWN])
        more = f" (+{len(missing) - MISSING_IDS_SHOWN} more)" if len(missing) > MISSING_IDS_SHOWN else ""
        raise AnnotationError(f"{anno_path} has no image entry for {len(missing)} of the "
                              f"{len(set(image_ids))} images of {source} (ids {shown}{more}); give "
                              "the annotation file the data was converted from (--anno_path)")


def run_network(runtime, dataset, collector, progress=True):
    """Run `runtime` (images -> boxes, scores) over an eval dataset into `collector`; images/s.
    The dataset's batches go to the runtime as they are, the last (short) one padded to the
    dataset's batch size (an exported model takes only the batch it was exported with)."""
    from tqdm import tqdm
    iterator = dataset.create_dict_iterator(output_numpy=True, num_epochs=1)
    total = dataset.get_dataset_size() * dataset.get_batch_size()
    count, start = 0, time.perf_counter()
    with tqdm(total=total, desc="eval", unit="img", disable=not progress) as bar:
        for batch in iterator:
            boxes, scores = run_padded(runtime, batch["image"], dataset.get_batch_size())
            for i in range(len(boxes)):
                collector.add(batch["img_id"][i, 0], boxes[i], scores[i], batch["image_shape"][i])
            count += len(boxes)
            bar.update(len(boxes))
    return count / max(time.perf_counter() - start, 1e-9)
