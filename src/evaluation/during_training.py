"""Evaluation during training: a function(detector) -> COCO AP on the eval MindRecord."""
from ..boxes import Anchors, AnchorSpec
from ..data.converters import find_mindrecord
from .evaluate import DetectionCollector, default_anno_path, run_network


def make_evaluator(cfg, eval_prefix, log):
    """The evaluation function for --eval_interval, or None (with a warning saying why) when the
    eval MindRecord or its annotation file is not usable - checked now, not after hours of training."""
    from ..data.pipeline import create_eval_dataset
    from ..deploy.runtimes import open_runtime
    from ..model import RetinaNetInfer
    try:
        mindrecord = find_mindrecord(cfg.mindrecord_dir, eval_prefix)
    except FileNotFoundError as exc:
        log.warning("eval_interval set but %s; periodic evaluation disabled", exc)
        return None
    anno_path = default_anno_path(cfg)
    try:
        DetectionCollector.from_config(cfg, anno_path)
    except (OSError, ValueError) as exc:
        log.warning("eval_interval set but %s; periodic evaluation disabled", exc)
        return None
    anchors = Anchors(AnchorSpec.from_config(cfg)).cycxhw

    def evaluate(detector):
        net = RetinaNetInfer(detector, anchors, cfg.prior_scaling)
        collector = DetectionCollector.from_config(cfg, anno_path)
        run_network(open_runtime(net), create_eval_dataset(mindrecord, cfg), collector, progress=False)
        return collector.evaluate()["AP"]
    return evaluate
