"""Network outputs -> COCO detections -> metrics; shared by eval.py, postprocess.py and training."""

import contextlib
import io
import logging
import os
import time

from nasfpn.core.atomic import write_json_atomic
from nasfpn.data.coco_format import (
    AnnotationError,
    absent_classes_message,
    check_num_classes,
    class_map,
    check_ground_truth_boxes,
    load_coco_json,
    model_class_map,
    unknown_classes_message,
)
from nasfpn.core.errors import UserError
from nasfpn.data.converters import mindspore_error_reason
from nasfpn.inference.detections import detections_from_graph, detections_to_coco, detections_of_image
from nasfpn.inference.runtimes import check_score_columns, returns_detections, run_padded
from nasfpn.core.storage import storage_errors
from nasfpn.evaluation.analysis import check_prediction_categories, per_class_results
from nasfpn.evaluation.coco_metrics import STAT_KEYS, ground_truth_coco, run_cocoeval


EVAL_RESULT_FILES = ("predictions.json", "metrics.json")
# predictions.json: up to max_boxes per class, in practice ~100 entries per image of ~120 bytes.
RESULT_BYTES_PER_IMAGE = 100 * 120


def expected_results_bytes(num_images):
    """A generous estimate of predictions.json + metrics.json for `num_images` images."""
    return num_images * RESULT_BYTES_PER_IMAGE + 64 * 1024


class DetectionCollector:
    """Accumulate per-image outputs as COCO result entries."""

    def __init__(
        self,
        anno_path,
        num_classes,
        min_score=0.1,
        nms_threshold=0.6,
        max_boxes=100,
        coco_classes=None,
        model_classes=None,
        model_source="the model",
    ):
        """`model_classes`: the class names the model carries (background first), matched by
        name; without them the rule create_data.py used (coco_classes, else file order)."""
        self.anno_path = anno_path
        self.coco = load_coco_json(anno_path)
        check_ground_truth_boxes(self.coco, anno_path)
        if model_classes:
            cmap, unknown, absent = model_class_map(self.coco, model_classes, anno_path)
            if unknown:
                raise AnnotationError(
                    unknown_classes_message(anno_path, unknown, model_classes, model_source)
                )
            if absent:
                logging.getLogger("nasfpn").warning(absent_classes_message(anno_path, absent, model_source))
        else:
            cmap = class_map(self.coco, coco_classes)
        check_num_classes(cmap, num_classes, anno_path)
        self.class_rule = cmap.rule
        self.to_category = cmap.class_to_category
        self.num_classes = num_classes
        self.sizes = {image["id"]: (image.get("height"), image.get("width")) for image in self.coco["images"]}
        self.size_mismatches = []  # (image id, annotation (h, w), decoded (h, w))
        self.params = dict(min_score=min_score, nms_threshold=nms_threshold, max_boxes=max_boxes)
        self.detections = []
        self.image_ids = []
        self.evaluator = None  # the last evaluate()'s accumulated COCOeval (None: no detections)
        self.per_class = []
        self.sources = {}  # what was evaluated (result_sources), written into metrics.json

    @classmethod
    def from_sections(cls, model, postprocess, anno_path, model_classes=None, model_source="the model"):
        """The collector of the model section's classes, post-processing as the postprocess
        section says."""
        return cls(
            anno_path,
            model.num_classes,
            postprocess.min_score,
            postprocess.nms_threshold,
            postprocess.max_boxes,
            model.coco_classes,
            model_classes,
            model_source,
        )

    def add(self, image_id, boxes, scores, image_hw):
        """boxes (A, 4) normalised y1x1y2x2, scores (A, C), image_hw the original (h, w) of the
        decoded image (what the boxes are scaled to; a different size in the annotation file is
        recorded in size_mismatches: its ground truth is then likely in another frame)."""
        self._note_size(image_id, image_hw)
        kept = detections_of_image(boxes, scores, image_hw, **self.params)
        self.detections += detections_to_coco(image_id, *kept, self.to_category)
        self.image_ids.append(int(image_id))

    def add_graph_detections(self, image_id, rows, image_hw, input_hw):
        """One image's rows of a detections graph (boxes in pixels of the network input of size
        input_hw, scores, classes, count), scaled to the decoded image's size image_hw."""
        self._note_size(image_id, image_hw)
        kept = detections_from_graph(*rows, image_hw, input_hw)
        self.detections += detections_to_coco(image_id, *kept, self.to_category)
        self.image_ids.append(int(image_id))

    def _note_size(self, image_id, image_hw):
        decoded = tuple(int(v) for v in image_hw)
        annotated = self.sizes.get(int(image_id))
        if annotated and annotated != decoded:
            self.size_mismatches.append((int(image_id), annotated, decoded))

    def evaluate(self, output_dir=None):
        """COCO metrics; the per-class rows (worst first) are kept in self.per_class. When
        output_dir is given writes predictions.json and metrics.json (with "per_class") there."""
        check_prediction_categories(self.detections, self.coco["categories"], self.anno_path)
        names = {c["id"]: c["name"] for c in self.coco["categories"]}
        if self.detections:
            self.evaluator = run_cocoeval(ground_truth_coco(self.coco), self.detections, self.image_ids)
            with contextlib.redirect_stdout(io.StringIO()):
                self.evaluator.summarize()
            stats = {k: float(v) for k, v in zip(STAT_KEYS, self.evaluator.stats)}
            self.per_class = per_class_results(self.evaluator, names)
        else:  # pycocotools refuses an empty result list: every number is 0
            stats = {k: 0.0 for k in STAT_KEYS}
            self.per_class = _empty_per_class(self.coco, self.image_ids)
        if output_dir:
            with storage_errors(output_dir, "writing the results into"):
                self._write_results(output_dir, stats)
        return stats

    def _write_results(self, output_dir, stats):
        write_json_atomic(os.path.join(output_dir, "predictions.json"), self.detections)
        write_json_atomic(
            os.path.join(output_dir, "metrics.json"),
            {
                "anno_path": os.path.abspath(self.anno_path),
                **self.sources,
                "num_images": len(self.image_ids),
                **self.params,
                **stats,
                "per_class": self.per_class,
            },
        )

    def size_mismatch_warning(self):
        """One line about the images whose decoded size differs from the annotation file's
        height/width (None when all agree)."""
        if not self.size_mismatches:
            return None
        shown = "; ".join(
            f"id {i}: {a[0]}x{a[1]} in the file, {d[0]}x{d[1]} decoded"
            for i, a, d in self.size_mismatches[:MISSING_IDS_SHOWN]
        )
        return (
            f"{len(self.size_mismatches)} image(s) decoded at another size than {self.anno_path} "
            f"gives (height x width: {shown}); boxes were scaled to the decoded size, so check "
            "that the annotation file belongs to these images"
        )


def result_sources(model_path, anno_path, mindrecord, record=None):
    """What a result is of, for metrics.json and report.html: the model file, the annotation file
    (and its sha256), the MindRecord (and its dataset record's creation time) and the date."""
    import datetime

    from nasfpn.core.files import sha256_of

    sources = {
        "model_path": os.path.abspath(model_path) if model_path else None,
        "anno_sha256": sha256_of(anno_path),
        "mindrecord": os.path.abspath(mindrecord),
        "evaluated_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if record is not None:
        sources["mindrecord_created"] = record.created
        sources["mindrecord_source"] = record.annotation_path
    return sources


def _empty_per_class(coco, image_ids):
    wanted = set(image_ids)
    rows = []
    for c in sorted(coco["categories"], key=lambda c: c["id"]):
        n = sum(
            1
            for a in coco["annotations"]
            if a["category_id"] == c["id"] and a["image_id"] in wanted and not a.get("iscrowd", 0)
        )
        value = 0.0 if n else -1.0
        rows.append(
            {
                "category_id": c["id"],
                "name": c["name"],
                "AP": value,
                "AP50": value,
                "AP75": value,
                "AR100": value,
                "num_gt": n,
            }
        )
    return sorted(rows, key=lambda r: (r["AP"] < 0, r["AP"], r["name"]))


MISSING_IDS_SHOWN = 5


def mindrecord_image_ids(mindrecord):
    """The img_id of every record of a MindRecord dataset (all shards), without decoding images;
    its columns are checked against what the evaluation reads first."""
    schema_reader = _open_mindrecord(mindrecord)
    try:
        schema = schema_reader.schema()
    finally:
        schema_reader.close()
    check_mindrecord_columns(mindrecord, schema, EVAL_MINDRECORD_COLUMNS)
    reader = _open_mindrecord(mindrecord, ["img_id"])
    try:
        return [int(row["img_id"][0]) for row in reader.get_next()]
    finally:
        reader.close()


def _open_mindrecord(mindrecord, columns=None):
    from mindspore.mindrecord import FileReader

    try:
        return FileReader(mindrecord, columns=columns)
    except RuntimeError as exc:  # MindSpore's message names the missing/corrupt part
        raise UserError(
            f"{mindrecord}: not a readable MindRecord dataset "
            f"({mindspore_error_reason(exc)}); create it again with "
            "create_data.py"
        ) from None


# What the evaluation pipeline reads from each record (nasfpn/data/pipeline.py:create_eval_dataset).
EVAL_MINDRECORD_COLUMNS = {"img_id": "int32", "image": "bytes"}


def check_mindrecord_columns(mindrecord, schema, needed):
    """UserError naming both sides unless the MindRecord's schema has each `needed` column with
    its type (a MindRecord of another tool would otherwise fail deep in the pipeline)."""
    problems = [
        f"{name} ({kind})" for name, kind in needed.items() if schema.get(name, {}).get("type") != kind
    ]
    if problems:
        have = ", ".join(f"{k} ({v.get('type')})" for k, v in sorted(schema.items()))
        raise UserError(
            f"{mindrecord}: the evaluation reads the columns {', '.join(problems)}, "
            f"which this MindRecord lacks (it has {have}); create it with create_data.py"
        )


def check_annotations_cover(coco, anno_path, image_ids, source):
    """Raise AnnotationError unless every id of `image_ids` (the images of `source`) is an image of
    the annotation file: checked before inference, not found by pycocotools after it."""
    known = {image["id"] for image in coco["images"]}
    missing = sorted(set(image_ids) - known)
    if missing:
        shown = ", ".join(str(i) for i in missing[:MISSING_IDS_SHOWN])
        more = f" (+{len(missing) - MISSING_IDS_SHOWN} more)" if len(missing) > MISSING_IDS_SHOWN else ""
        raise AnnotationError(
            f"{anno_path} has no image entry for {len(missing)} of the "
            f"{len(set(image_ids))} images of {source} (ids {shown}{more}); give "
            "the annotation file the data was converted from (--anno_path)"
        )


def run_network(runtime, dataset, collector, progress=True, model_name="the network"):
    """Run `runtime` (images -> boxes, scores; or a detections graph) over an eval dataset into
    `collector`; images/s. The dataset's batches go to the runtime as they are, the last (short)
    one padded to the dataset's batch size (an exported model takes only the batch it was
    exported with)."""
    from tqdm import tqdm

    iterator = dataset.create_dict_iterator(output_numpy=True, num_epochs=1)
    total = dataset.get_dataset_size() * dataset.get_batch_size()
    count, start = 0, time.perf_counter()
    with tqdm(total=total, desc="eval", unit="img", disable=not progress) as bar:
        for batch in iterator:
            if returns_detections(runtime):
                count += _add_graph_batch(runtime, batch, dataset.get_batch_size(), collector)
                bar.update(len(batch["image"]))
                continue
            boxes, scores = run_padded(runtime, batch["image"], dataset.get_batch_size())
            if not count:  # a model of another class count would give an mAP of about 0, exit 0
                check_score_columns(model_name, scores.shape[-1], collector.num_classes)
            for i in range(len(boxes)):
                collector.add(batch["img_id"][i, 0], boxes[i], scores[i], batch["image_shape"][i])
            count += len(boxes)
            bar.update(len(boxes))
    return count / max(time.perf_counter() - start, 1e-9)


def _add_graph_batch(runtime, batch, batch_size, collector):
    """One batch through a detections graph into `collector`; the number of images."""
    outputs = run_padded(runtime, batch["image"], batch_size)
    input_hw = batch["image"].shape[2:]
    for i in range(len(outputs[0])):
        collector.add_graph_detections(
            batch["img_id"][i, 0], [o[i] for o in outputs], batch["image_shape"][i], input_hw
        )
    return len(outputs[0])
