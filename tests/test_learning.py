"""Can it learn? Overfitting a handful of embedded-dataset images reaches a high mAP on them."""
import json
import os

import mindspore as ms
import numpy as np
import pytest

from src.boxes import AnchorMatcher, Anchors, AnchorSpec
from src.data.embedded import generate_embedded_dataset
from src.data.transforms import decode_image, preprocess_image
from src.inference.runtimes import open_runtime
from src.evaluation.evaluate import DetectionCollector
from src.model import RetinaNetInfer, RetinaNetWithLoss, build_detector
from src.training.train_step import TrainStep, build_optimizer
from tests.conftest import TINY, make_config


@pytest.mark.slow
def test_overfitting_four_images_reaches_high_map(tmp_path):
    root = generate_embedded_dataset(str(tmp_path / "d"), num_train=1, num_val=4, size=128, seed=11)
    anno = os.path.join(root, "annotations", "instances_val2017.json")
    with open(anno) as f:
        coco = json.load(f)
    cfg = make_config(*TINY, "--num_classes=4", "--cls_prior_probability=0.01", "--fpn_stages=2", "--bn_momentum=0.9",
                      "--head_convs=2")
    anchors = Anchors(AnchorSpec.from_config(cfg))
    matcher = AnchorMatcher(anchors)
    images, targets = [], []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        boxes = np.array([[a["bbox"][1], a["bbox"][0], a["bbox"][1] + a["bbox"][3],
                           a["bbox"][0] + a["bbox"][2]] for a in anns], np.float32) / 128
        images.append(preprocess_image(decode_image(os.path.join(root, "val2017", image["file_name"])), (128, 128)))
        targets.append(matcher.encode(boxes, [a["category_id"] for a in anns]))
    batch = [ms.Tensor(np.stack(images))] + [ms.Tensor(np.stack([t[k] for t in targets])) for k in range(3)]

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(1)
    detector = build_detector(cfg)
    net = RetinaNetWithLoss(detector, cfg.num_classes, cfg.gamma, cfg.alpha)
    steps = 150
    lr = np.full(steps, 0.02, np.float32)
    step = TrainStep(net, build_optimizer(net, lr), grad_clip_norm=10.0)
    step.set_train()
    losses = [float(step(*batch)[0].asnumpy()) for _ in range(steps)]
    assert losses[-1] < 0.2 * losses[0], losses[::10]

    infer = RetinaNetInfer(detector, anchors.cycxhw, cfg.prior_scaling)
    boxes, scores = open_runtime(infer)(np.stack(images))
    collector = DetectionCollector.from_config(cfg, anno)
    for image, b, s in zip(coco["images"], boxes, scores):
        collector.add(image["id"], b, s, (128, 128))
    stats = collector.evaluate(str(tmp_path / "eval"))
    assert stats["AP50"] > 0.8, stats
    assert os.path.isfile(tmp_path / "eval" / "metrics.json")
