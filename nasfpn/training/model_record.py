"""What a training run's checkpoints say about themselves (nasfpn/model_files/description.py), and what a
--pre_trained checkpoint's own description sets for the run."""

import os

from nasfpn.data.coco_format import AnnotationError, class_map, load_coco_json
from nasfpn.data.layout import annotation_path
from nasfpn.model_files.description import (
    CLASS_OPTIONS,
    INPUT_OPTIONS,
    PARAMETER_OPTIONS,
    ModelDescription,
    apply_description,
    read_description,
)


def apply_pretrained_description(cfg, log):
    """(cfg, the pre-trained file's description or None). The options that shape the parameters
    come from the file unless set, and a contradicting one is refused (the weights would not load);
    with --filter_weight the class options are the run's own (the class head is replaced). The
    input size and anchors are the run's choice: a differing one is logged, not refused."""
    training = cfg.training
    if not training.pre_trained:
        return cfg, None
    description = read_description(training.pre_trained)
    if description is None:
        return cfg, None
    shaped = [key for key in PARAMETER_OPTIONS if not (training.filter_weight and key in CLASS_OPTIONS)]
    cfg, kept = apply_description(
        cfg, description, training.pre_trained, tuple(shaped) + INPUT_OPTIONS, lenient=INPUT_OPTIONS
    )
    for key, given, stored in kept:
        log.info("fine-tuning with %s=%s (%s was trained with %s)", key, given, training.pre_trained, stored)
    return cfg, description


def training_classes(model, data, filter_weight, pretrained, log):
    """(class names background first, category id per class) of the run, or (None, None).

    From the data section's training annotation file when it is there (the rule create_data.py
    used for the MindRecord's class indices), else the pre-trained file's classes (fine-tuning on
    the same classes, unless `filter_weight`), else the model section's coco_classes when it has
    num_classes names."""
    path = annotation_path(data, data.train_data_type)
    if path.lower().endswith(".json") and os.path.isfile(path):
        try:
            cmap = class_map(load_coco_json(path), model.coco_classes)
        except AnnotationError as exc:
            log.warning("class names not taken from %s: %s", path, exc)
        else:
            if cmap.num_classes == model.num_classes:
                return list(cmap.names), [cmap.class_to_category.get(i) for i in range(1, cmap.num_classes)]
            log.warning(
                "%s gives %d classes but --num_classes is %d; the checkpoints carry no class names from it",
                path,
                cmap.num_classes,
                model.num_classes,
            )
    if (
        pretrained is not None
        and pretrained.class_names is not None
        and not filter_weight
        and len(pretrained.class_names) == model.num_classes
    ):
        return list(pretrained.class_names), list(pretrained.category_ids or [None] * (model.num_classes - 1))
    if len(model.coco_classes) == model.num_classes:
        return list(model.coco_classes), None
    log.warning(
        "the checkpoints will carry no class names: no training annotation file at %s and "
        "--coco_classes has %d names for --num_classes=%d; give --anno_path (or --coco_root) "
        "of the training set so eval and infer can map classes by name",
        path,
        len(model.coco_classes),
        model.num_classes,
    )
    return None, None


def training_description(model, anchors, data, filter_weight, pretrained, log):
    """The ModelDescription every checkpoint of this run carries."""
    names, ids = training_classes(model, data, filter_weight, pretrained, log)
    return ModelDescription.of_sections(model, anchors, names, ids)
