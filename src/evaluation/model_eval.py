"""eval.py's run: the config's model over the eval MindRecord set, COCO metrics written out."""
import os

from ..data.converters import find_mindrecord
from ..data.layout import EVAL_PREFIX, annotation_path
from ..errors import UserFileNotFoundError
from ..inference.open_model import check_model_choice, open_model
from ..inference.runtimes import model_batch_size
from .evaluate import DetectionCollector, check_annotations_cover, mindrecord_image_ids, run_network


def evaluate_model(cfg, log):
    """eval.py: the config's model (checkpoint, exported file or hub) over the eval MindRecord;
    writes predictions.json and metrics.json into cfg.eval_output_dir and returns the stats.
    Everything that can be checked without running the model is checked first."""
    from ..data.pipeline import create_eval_dataset
    check_model_choice(cfg)
    mindrecord = eval_mindrecord(cfg)
    anno_path = annotation_path(cfg, cfg.val_data_type)
    collector = DetectionCollector.from_config(cfg, anno_path)
    image_ids = mindrecord_image_ids(mindrecord)
    check_annotations_cover(collector.coco, anno_path, image_ids, mindrecord)
    runtime, model = open_model(cfg)
    batch_size = model_batch_size(runtime)
    dataset = create_eval_dataset(mindrecord, cfg, batch_size=batch_size)
    log.info("evaluating %s on %s (%d images, batch %d)", model, mindrecord, len(image_ids),
             batch_size)
    images_per_second = run_network(runtime, dataset, collector)
    stats = collector.evaluate(cfg.eval_output_dir)
    log.info("%.2f images/s; %d detections; predictions.json and metrics.json in %s",
             images_per_second, len(collector.detections), os.path.abspath(cfg.eval_output_dir))
    return stats


def eval_mindrecord(cfg):
    """The first file of the eval MindRecord set; the error says how to create it."""
    try:
        return find_mindrecord(cfg.mindrecord_dir, cfg.prefix or EVAL_PREFIX)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(f"{exc}: python create_data.py --create_dataset={cfg.dataset} "
                                    f"--is_training=false --coco_root={cfg.coco_root} "
                                    f"--mindrecord_dir={cfg.mindrecord_dir}") from None
