"""Fine-tuning that keeps classes by name (--filter_weight=True, keep_class_rows): the row mapping
of the final classification conv, the source's class names, and the exact check - at step 0 the
fine-tune model scores the kept classes as its source (to float32 summation order), and so their per-class AP."""

import json
import logging

import mindspore as ms
import numpy as np
import pytest
from mindspore.nn.utils import no_init_parameters

from tests.conftest import TINY, make_config
from tests.helpers.modes import switch_mode
from tests.helpers.random_heads import spread_heads

ANCHORS = 9
SOURCE_NAMES = ["background", "circle", "square", "triangle"]
# Kept classes in another order and at other indices, plus two new ones; square is left out.
RUN_NAMES = ["background", "hexagon", "triangle", "star", "circle"]
KEPT = {"circle": (1, 4), "triangle": (3, 2)}  # name -> (source index, run index)
NEW = {"hexagon": 1, "star": 3}
PRIOR = 0.01


# ---- the row mapping (pure numpy) ---------------------------------------------------------------


def model_and_anchors(cfg):
    """The sections a detector is built from."""
    return cfg.model, cfg.anchors


def test_class_row_map_matches_names_exactly_and_keeps_background():
    from nasfpn.model.retina_head import class_row_map

    assert class_row_map(SOURCE_NAMES, RUN_NAMES).tolist() == [0, -1, 3, -1, 1]
    # background maps whatever it is called; case and spaces count
    assert class_row_map(["bg", "Person", "car"], ["__background__", "person", "car ", "car"]).tolist() == [
        0,
        -1,
        -1,
        2,
    ]


def test_remap_class_channels_takes_every_anchors_row_of_a_kept_class():
    """Channel a*C + c (anchor-major): checked against rows picked one by one."""
    from nasfpn.model.retina_head import remap_class_channels

    rng = np.random.default_rng(0)
    num_source, num_run = 4, 5
    source = rng.normal(size=(ANCHORS * num_source, 2, 3, 3)).astype(np.float32)
    fresh = rng.normal(size=(ANCHORS * num_run, 2, 3, 3)).astype(np.float32)
    row_map = [0, -1, 3, -1, 1]
    out = remap_class_channels(source, fresh, row_map, ANCHORS)
    for a in range(ANCHORS):
        for c, src in enumerate(row_map):
            expected = fresh[a * num_run + c] if src < 0 else source[a * num_source + src]
            assert np.array_equal(out[a * num_run + c], expected), (a, c)
    bias = remap_class_channels(
        np.arange(ANCHORS * num_source, dtype=np.float32),
        np.full(ANCHORS * num_run, -7, np.float32),
        row_map,
        ANCHORS,
    )
    assert bias[:num_run].tolist() == [0, -7, 3, -7, 1]
    assert bias[-num_run:].tolist() == [32, -7, 35, -7, 33]  # anchor 8: source channels 8*4 + c
    with pytest.raises(ValueError, match="do not fit 9 anchors x 5 classes"):
        remap_class_channels(source[:-1], fresh, row_map, ANCHORS)
    with pytest.raises(ValueError, match="cannot give the rows"):
        remap_class_channels(source, fresh, [0, 4, 1, 2, 3], ANCHORS)


def test_source_class_names_the_file_s_list_else_the_release_coco_classes_for_81():
    from nasfpn.model_files.description import ModelDescription
    from nasfpn.training.class_keeping import source_class_names

    described = ModelDescription.of_sections(
        *model_and_anchors(make_config(*TINY, "--num_classes=4")), SOURCE_NAMES
    )
    assert source_class_names(described, 4)[0] == SOURCE_NAMES
    names, how = source_class_names(None, 81)
    assert len(names) == 81 and names[:4] == ["background", "person", "bicycle", "car"]
    assert names[-1] == "toothbrush" and "release's COCO classes" in how
    assert source_class_names(None, 4) == (
        None,
        "it carries no class list and its head has 4 classes, not the release's 81 COCO classes",
    )


# ---- a source detector and its fine-tune at step 0 ----------------------------------------------


@pytest.fixture(scope="module")
def source(request, tmp_path_factory):
    """A random TINY detector with spread heads (logits of several units, boxes off the anchors)
    and class biases, saved with its class list."""
    from nasfpn.model_files.checkpoint import save_checkpoint_atomic
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.model_files.description import ModelDescription, checkpoint_entries

    switch_mode(request, ms.PYNATIVE_MODE)
    cfg = make_config(*TINY, "--num_classes=4", "--cls_prior_probability=0.5")
    ms.set_seed(0)
    net = spread_heads(RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), 4))
    # prior 0.5 gives zero biases: make them differ per channel so a dropped bias would show
    for weight, bias in final_convs(net):
        bias.set_data(ms.Tensor(np.linspace(-1, 1, bias.shape[0], dtype=np.float32)))
    path = str(tmp_path_factory.mktemp("source") / "shapes.ckpt")
    save_checkpoint_atomic(
        net, path, checkpoint_entries(ModelDescription.of_sections(cfg.model, cfg.anchors, SOURCE_NAMES))
    )
    net.set_train(False)
    return cfg, net, path


def final_convs(net):
    from nasfpn.training.class_keeping import final_class_convs

    return final_class_convs(net)


def fine_tune_trainer(path, tmp_path, *options, names=RUN_NAMES):
    from nasfpn.model_files.description import ModelDescription
    from nasfpn.training.trainer import Trainer

    cfg = make_config(
        *TINY,
        f"--num_classes={len(names)}",
        f"--cls_prior_probability={PRIOR}",
        "--filter_weight=True",
        f"--pre_trained={path}",
        f"--save_checkpoint_path={tmp_path}",
        *options,
    )
    return Trainer(
        cfg, batches_per_epoch=1, description=ModelDescription.of_sections(cfg.model, cfg.anchors, names)
    )


@pytest.fixture(scope="module")
def fine_tuned(source, tmp_path_factory, request):
    """The trainer's network after restore() (step 0), and its final class convs before it."""
    switch_mode(request, ms.PYNATIVE_MODE)
    ms.set_seed(1)
    trainer = fine_tune_trainer(source[2], str(tmp_path_factory.mktemp("ckpt")))
    before = [(w.asnumpy().copy(), b.asnumpy().copy()) for w, b in final_convs(trainer.net)]
    assert trainer.restore() == 0
    trainer.detector.set_train(False)
    return trainer, before


@pytest.fixture(scope="module")
def images():
    return ms.Tensor(np.random.default_rng(5).normal(size=(2, 3, 128, 128)).astype(np.float32))


def _class_conv_inputs(net, images):
    """(box offsets, logits) of `net` on `images`, and the input of each level's last classification
    conv, captured on that forward pass (PyNative)."""
    seen = []
    handles = [
        subnet.feats[len(subnet.feats) - 1].register_forward_pre_hook(
            lambda cell, args: seen.append(args[0].asnumpy())
        )
        for subnet in net.network.head.multi_cls_layers
    ]
    loc, logits = (t.asnumpy() for t in net.network(images))
    for handle in handles:
        handle.remove()
    return loc, logits, seen


def test_kept_classes_score_as_the_source_at_step_0(source, fine_tuned, images):
    _, source_net, _ = source
    trainer, _ = fine_tuned
    source_loc, source_logits, conv_inputs = _class_conv_inputs(source_net, images)
    loc, logits = (t.asnumpy() for t in trainer.detector(images))
    assert logits.shape == source_logits.shape[:2] + (len(RUN_NAMES),)
    assert np.array_equal(loc, source_loc)  # the same convs, same shapes: the file's, bit for bit
    # The kept rows are the same weights on the same inputs, but the class conv has another output
    # channel count (45 vs 36), for which oneDNN may pick a kernel that sums in another order (it
    # does under DNNL_MAX_CPU_ISA=AVX2; natively the sums are bit-equal). Reordering a float32 sum of
    # n = 9 x C_in products changes it by at most n u sum|w x| <= n u max|x| ||w_row||_1, for each of
    # the two results.
    weights = [w.asnumpy() for w, _ in final_convs(source_net)]
    n = weights[0][0].size
    bound = (
        2
        * n
        * 2.0**-24
        * max(
            float(np.abs(x).max()) * float(np.abs(w).reshape(len(w), -1).sum(1).max())
            for x, w in zip(conv_inputs, weights)
        )
    )
    assert len(conv_inputs) == len(weights) and bound < 1e-2
    np.testing.assert_allclose(logits[..., 0], source_logits[..., 0], rtol=0, atol=bound)
    for name, (src, dst) in KEPT.items():
        np.testing.assert_allclose(
            logits[..., dst], source_logits[..., src], rtol=0, atol=bound, err_msg=name
        )
    # a row taken from the wrong class or anchor would show: the columns differ everywhere
    columns = source_logits.reshape(-1, len(SOURCE_NAMES)).T
    assert all((columns[i] != columns[j]).all() for i in range(4) for j in range(i))
    assert columns.std(axis=1).min() > 0.05


def test_new_classes_keep_the_head_s_initialisation_and_prior_bias(fine_tuned):
    trainer, before = fine_tuned
    prior_logit = -np.log((1 - PRIOR) / PRIOR)
    num_run = len(RUN_NAMES)
    for (weight, bias), (weight_before, bias_before) in zip(final_convs(trainer.net), before):
        for dst in NEW.values():
            rows = [a * num_run + dst for a in range(ANCHORS)]
            assert np.array_equal(weight.asnumpy()[rows], weight_before[rows])
            np.testing.assert_array_equal(bias.asnumpy()[rows], np.float32(prior_logit))
        # the kept rows were replaced (the fresh init is ~0.02, the source's spread x30)
        assert np.abs(weight.asnumpy()[4]).max() > 10 * np.abs(weight_before[4]).max()


def network_outputs(net, cfg, images):
    """Decoded boxes and sigmoid scores of `net` (the detector) on `images`, as eval gets them."""
    from nasfpn.ops.boxes import Anchors
    from nasfpn.model import RetinaNetInfer

    infer = RetinaNetInfer(net, Anchors(cfg.anchors.spec(cfg.model.img_shape)).cycxhw, cfg.prior_scaling)
    return [t.asnumpy() for t in infer(images)]


def write_annotations(path, names, ids, boxes_by_name):
    """A COCO file of two 128x128 images; `boxes_by_name`: name -> [(image index, x1, y1, x2, y2)]."""
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "height": 128, "width": 128} for i in range(2)]
    annotations = []
    for name, boxes in boxes_by_name.items():
        for k, (image, x1, y1, x2, y2) in enumerate(boxes):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image + 1,
                    "category_id": ids[names.index(name)],
                    "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(ids, names)]
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return str(path)


def per_class_ap(outputs, anno_path, cfg, class_names):
    from nasfpn.evaluation.scoring import DetectionCollector

    collector = DetectionCollector.from_sections(
        cfg.model, cfg.postprocess, anno_path, model_classes=class_names
    )
    for image, (boxes, scores) in enumerate(zip(*outputs)):
        collector.add(image + 1, boxes, scores, (128, 128))
    collector.evaluate()
    return {row["name"]: row for row in collector.per_class}


def test_kept_classes_have_the_source_s_per_class_ap(source, fine_tuned, images, tmp_path):
    """Ground truth: a few of the source's own detections of the kept classes, shifted, so its
    AP on them is neither 0 nor 1; the fine-tune model must score the same on them."""
    source_cfg, source_net, _ = source
    trainer, _ = fine_tuned
    from nasfpn.inference.detections import detections_of_image

    source_outputs = network_outputs(source_net.network, source_cfg, images)
    source_dets = [detections_of_image(boxes, scores, (128, 128)) for boxes, scores in zip(*source_outputs)]
    truth = {}
    for name, (src, _) in KEPT.items():
        truth[name] = [
            (i, *(float(v) + 1.0 for v in boxes[classes == src][k]))
            for i, (boxes, _, classes) in enumerate(source_dets)
            for k in (0, 2, 5)
            if k < int((classes == src).sum())
        ]
        assert len(truth[name]) >= 4, name
    source_file = write_annotations(tmp_path / "source.json", SOURCE_NAMES[1:], [11, 12, 13], truth)
    run_file = write_annotations(tmp_path / "run.json", RUN_NAMES[1:], [5, 6, 7, 8], truth)
    expected = per_class_ap(source_outputs, source_file, source_cfg, SOURCE_NAMES)
    got = per_class_ap(
        network_outputs(trainer.detector, trainer.cfg, images), run_file, trainer.cfg, RUN_NAMES
    )
    for name in KEPT:
        assert 0 < expected[name]["AP"] < 1, expected[name]
        for key in ("AP", "AP50", "AP75", "AR100", "num_gt"):
            assert got[name][key] == expected[name][key], (name, key)


# ---- the release checkpoint, refusals, the old behaviour -----------------------------------------


def test_an_81_class_file_without_class_list_keeps_coco_classes_by_name(tmp_path, caplog):
    """The published checkpoint's case: no description, 81 classes -> the release's COCO list."""
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.training.class_keeping import load_keeping_classes

    ms.set_seed(2)
    coco = RetinaNetWithLoss(build_detector(*model_and_anchors(make_config(*TINY, "--num_classes=81"))), 81)
    path = str(tmp_path / "coco.ckpt")
    ms.save_checkpoint(coco, path)  # like the release's: no class list
    names = ["background", "dog", "person", "widget"]  # dog is COCO class 17, person 1
    with no_init_parameters():  # initialised when read: only what the file does not set is
        net = RetinaNetWithLoss(build_detector(*model_and_anchors(make_config(*TINY, "--num_classes=4"))), 4)
    fresh = final_convs(net)[0][0].asnumpy().copy()
    with caplog.at_level(logging.INFO, logger="nasfpn"):
        kept = load_keeping_classes(net, path, names, ANCHORS, logging.getLogger("nasfpn"))
    assert kept.kept == [("background", 0, 0), ("dog", 17, 1), ("person", 1, 2)]
    assert kept.new == [("widget", 3)] and len(kept.left_out) == 78
    assert "taken as the release's COCO classes" in caplog.text and "widget (3)" in caplog.text
    source = final_convs(coco)[0][0].asnumpy()
    weight = final_convs(net)[0][0].asnumpy()
    for a in range(ANCHORS):
        for src, dst in ((0, 0), (17, 1), (1, 2)):
            assert np.array_equal(weight[a * 4 + dst], source[a * 81 + src])
        assert np.array_equal(weight[a * 4 + 3], fresh[a * 4 + 3])
    tower = "network.head.multi_cls_layers.0.feats.0.weight"
    assert np.array_equal(
        dict(net.parameters_and_names())[tower].asnumpy(), dict(coco.parameters_and_names())[tower].asnumpy()
    )


def test_class_biases_into_a_head_without_are_refused_before_loading(source):
    from nasfpn.model_files.checkpoint import CheckpointError
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.training.class_keeping import load_keeping_classes

    net = RetinaNetWithLoss(build_detector(*model_and_anchors(make_config(*TINY, "--num_classes=5"))), 5)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    with pytest.raises(CheckpointError) as refused:
        load_keeping_classes(net, source[2], RUN_NAMES, ANCHORS, logging.getLogger("nasfpn"))
    assert str(refused.value) == (
        f"{source[2]}: its class head has biases (network.head.multi_cls_layers.0.feats.2.bias) and "
        "this network's has none (--cls_prior_probability=0); give --cls_prior_probability > 0 "
        "(e.g. 0.01, the new classes' prior) so the kept classes keep their biases"
    )
    assert all(np.array_equal(p.asnumpy(), before[p.name]) for p in net.get_parameters())


def test_keep_class_rows_false_starts_the_whole_class_head_fresh(source, tmp_path, request):
    switch_mode(request, ms.PYNATIVE_MODE)
    trainer = fine_tune_trainer(source[2], str(tmp_path), "--keep_class_rows=False")
    head = "network.head.multi_cls_layers."
    before = {p.name: p.asnumpy().copy() for p in trainer.net.get_parameters() if p.name.startswith(head)}
    trainer.restore()
    stored = ms.load_checkpoint(source[2])
    for param in trainer.net.get_parameters():
        if param.name.startswith(head):
            assert np.array_equal(param.asnumpy(), before[param.name]), param.name
        else:
            assert np.array_equal(param.asnumpy(), stored[param.name].asnumpy()), param.name


def test_the_finetune_config_warms_up_in_100_steps_then_steps_down_at_epochs_8_and_11(repo_root):
    """configs/finetune.yaml on a run long enough for its recipe (1200 steps: its 100-step warm-up
    is under a tenth, fit_schedule_to_run keeps it): lr from 0.1 x lr to lr over steps 0..100
    (mmdetection's linear warm-up, typed here), x0.1 from epoch 8 and again from epoch 11; no
    schedule warning."""
    import os
    from nasfpn.training.lr_schedule import lr_schedule_from_config, schedule_warnings

    cfg = make_config(f"--config_path={os.path.join(repo_root, 'configs', 'finetune.yaml')}")
    assert cfg.filter_weight and cfg.keep_class_rows and cfg.cls_prior_probability == PRIOR
    steps_per_epoch, peak = 100, cfg.lr
    lr = lr_schedule_from_config(cfg.schedule, steps_per_epoch, global_batch=16)
    expected = [
        peak * (1 - (1 - i / 100) * 0.9)
        if i < 100
        else peak * (1 if i < 8 * 100 else 0.1 if i < 11 * 100 else 0.01)
        for i in range(12 * 100)
    ]
    np.testing.assert_allclose(lr, expected, rtol=1e-6)  # float32 rounding of float64 values
    assert lr[0] == pytest.approx(0.1 * peak, rel=1e-6)
    for batch in (2, 16, 128):  # lr is not scaled by the batch: no warning anywhere
        assert schedule_warnings(cfg.schedule, steps_per_epoch, batch) == []


def test_a_backbone_file_with_filter_weight_points_to_backbone_pretrained(source, tmp_path):
    """A zoo-layout backbone file (no head) given as --pre_trained: the same pointer as without
    --filter_weight, and nothing of the network changes."""
    from nasfpn.model.backbone_weights import BackboneFileError

    prefix = "network.backbone."
    stored = ms.load_checkpoint(source[2])
    path = str(tmp_path / "resnet18.ckpt")
    ms.save_checkpoint(
        [
            {"name": name[len(prefix) :], "data": value}
            for name, value in stored.items()
            if name.startswith(prefix)
        ],
        path,
    )
    trainer = fine_tune_trainer(path, str(tmp_path / "ckpt"))
    before = {p.name: p.asnumpy().copy() for p in trainer.net.get_parameters()}
    with pytest.raises(BackboneFileError) as refused:
        trainer.restore()
    assert str(refused.value) == (
        f"--pre_trained={path} holds only a backbone (zoo layout), not a "
        "detector: give it as --backbone_pretrained"
    )
    assert all(np.array_equal(p.asnumpy(), before[p.name]) for p in trainer.net.get_parameters())


@pytest.mark.parametrize("use_ema", [True, False])
def test_a_file_with_ema_weights_gives_the_kept_rows_of_the_chosen_weights(source, tmp_path, use_ema):
    """A checkpoint of a run with --ema holds ema.<name> beside each weight: --use_ema picks which
    the kept rows (and everything else) come from, as for a plain --pre_trained."""
    from nasfpn.model import RetinaNetWithLoss, build_detector
    from nasfpn.training.class_keeping import load_keeping_classes

    stored = ms.load_checkpoint(source[2])
    plain = {n: v.asnumpy() for n, v in stored.items() if n.startswith("network.")}
    entries = [{"name": n, "data": ms.Tensor(v)} for n, v in plain.items()]
    entries += [{"name": f"ema.{n}", "data": ms.Tensor(v * np.float32(0.5))} for n, v in plain.items()]
    entries.append({"name": "ema.updates", "data": ms.Tensor(np.array([3], np.int32))})
    path = str(tmp_path / "with_ema.ckpt")
    from nasfpn.model_files.description import METADATA_KEY

    ms.save_checkpoint(entries, path, append_dict={METADATA_KEY: stored[METADATA_KEY]})  # its class list
    cfg = make_config(*TINY, "--num_classes=5", f"--cls_prior_probability={PRIOR}")
    with no_init_parameters():  # initialised when read (the new class rows), else set by the file
        net = RetinaNetWithLoss(build_detector(cfg.model, cfg.anchors), 5)
    assert (
        load_keeping_classes(net, path, RUN_NAMES, ANCHORS, logging.getLogger("nasfpn"), use_ema=use_ema)
        is not None
    )
    scale = np.float32(0.5) if use_ema else np.float32(1)
    weight = final_convs(net)[0][0]
    source_weight = plain[weight.name] * scale
    for name, (src, dst) in KEPT.items():
        assert np.array_equal(
            weight.asnumpy()[[a * 5 + dst for a in range(ANCHORS)]],
            source_weight[[a * 4 + src for a in range(ANCHORS)]],
        ), name
    tower = "network.head.multi_cls_layers.0.feats.0.weight"
    assert np.array_equal(dict(net.parameters_and_names())[tower].asnumpy(), plain[tower] * scale)
