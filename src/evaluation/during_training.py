"""Evaluation during training: a function(detector) -> COCO AP on the eval MindRecord."""
from ..boxes import Anchors, AnchorSpec
from ..data.converters import find_mindrecord
from ..errors import UserFileNotFoundError
from ..data.layout import annotation_path
from .evaluate import DetectionCollector, check_annotations_cover, mindrecord_image_ids, run_network


def make_evaluator(cfg, eval_prefix):
    """The evaluation function for --eval_interval. The eval MindRecord and its annotation file are
    checked now, not after hours of training: a UserError says what is missing."""
    from ..data.pipeline import create_eval_dataset
    from ..inference.runtimes import open_runtime
    from ..model import RetinaNetInfer
    try:
        mindrecord = find_mindrecord(cfg.mindrecord_dir, eval_prefix)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(f"--eval_interval={cfg.eval_interval} needs the eval MindRecord: {exc} "
                                    "(create it with create_data.py --is_training=False, or set "
                                    "--eval_interval=0)") from None
    anno_path = annotation_path(cfg, cfg.val_data_type)
    collector = DetectionCollector.from_config(cfg, anno_path)
    check_annotations_cover(collector.coco, anno_path, mindrecord_image_ids(mindrecord), mindrecord)
    anchors = Anchors(AnchorSpec.from_config(cfg)).cycxhw

    def evaluate(detector):
        net = RetinaNetInfer(detector, anchors, cfg.prior_scaling)
        collector = DetectionCollector.from_config(cfg, anno_path)
        run_network(open_runtime(net), create_eval_dataset(mindrecord, cfg), collector, progress=False)
        return collector.evaluate()["AP"]
    return evaluate
