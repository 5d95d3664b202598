"""What a training run's checkpoints say about themselves (nasfpn/model_files/description.py), and what a
--pre_trained checkpoint's own description sets for the run."""

import os

from nasfpn.data.coco_format import AnnotationError, class_map, load_coco_json
from nasfpn.data.dataset_record import DatasetRecordError, apply_record_classes, read_dataset_record
from nasfpn.data.layout import annotation_path
from nasfpn.model_files.description import (
    CLASS_OPTIONS,
    INPUT_OPTIONS,
    PARAMETER_OPTIONS,
    ModelDescription,
    apply_description,
    read_description,
)


# What the inherited-network log line names: the options a user must know to read a fine-tune.
NETWORK_LOG_OPTIONS = ("backbone_depth", "fpn_stages", "fpn_channels", "head_convs", "img_shape")


def network_text(model) -> str:
    """'ResNet-18 backbone, 2 NAS-FPN stages x 64 channels, 2 head convs, img_shape [128, 128]' of
    the model section."""
    img_shape = list(model.img_shape)
    return (
        f"ResNet-{model.backbone_depth} backbone, {model.fpn_stages} NAS-FPN stage(s) x {model.fpn_channels} "
        f"channels, {model.head_convs} head conv(s), img_shape {img_shape}"
    )


def inherited_network_line(model, pre_trained, description, inherited) -> str:
    """The log line naming the network (the model section) a fine-tune of `pre_trained` runs and
    where each part came from."""
    if description is None:
        return (
            f"network: {network_text(model)} - this run's options ({pre_trained} carries no "
            "description of its network, so it must have been trained with them: the release's "
            "unless set)"
        )
    shown = [key for key in NETWORK_LOG_OPTIONS if key in inherited]
    own = [key for key in NETWORK_LOG_OPTIONS if key not in inherited]
    return (
        f"network inherited from {pre_trained}: {network_text(model)} (from the checkpoint: "
        f"{', '.join(shown) or 'none'}; "
        f"{'as given here: ' + ', '.join(own) if own else 'none given here'})"
    )


def apply_pretrained_description(cfg, log):
    """(cfg, the pre-trained file's description or None). The options that shape the parameters
    come from the file unless set, and a contradicting one is refused (the weights would not load);
    with --filter_weight the class options are the run's own (the class head is replaced). The
    input size and anchors are the run's choice: a differing one is logged, not refused. One line
    logs the network the run builds (backbone, stages, channels, head convs, img_shape) and which
    parts came from the file."""
    training = cfg.training
    if not training.pre_trained:
        return cfg, None
    description = read_description(training.pre_trained)
    if description is None:
        log.info("%s", inherited_network_line(cfg.model, training.pre_trained, None, ()))
        return cfg, None
    shaped = [key for key in PARAMETER_OPTIONS if not (training.filter_weight and key in CLASS_OPTIONS)]
    cfg, kept = apply_description(
        cfg, description, training.pre_trained, tuple(shaped) + INPUT_OPTIONS, lenient=INPUT_OPTIONS
    )
    for key, given, stored in kept:
        log.info("fine-tuning with %s=%s (%s was trained with %s)", key, given, training.pre_trained, stored)
    kept_keys = {key for key, _, _ in kept}
    inherited = [key for key in NETWORK_LOG_OPTIONS if key not in kept_keys and key not in cfg.explicit_keys]
    log.info("%s", inherited_network_line(cfg.model, training.pre_trained, description, inherited))
    return cfg, description


def _shown_names(names):
    names = list(names)
    return ", ".join(names[:6]) + (f" ... ({len(names)} names)" if len(names) > 6 else "")


def check_class_list(coco_classes, classes_given: bool, record, source):
    """Refuse a given --coco_classes (`classes_given`) under which the MindRecord's categories
    would map onto other classes than the ones it was converted with (its class indices mean the
    record's names)."""
    if record.class_names is None or not classes_given:
        return
    names = class_map({"categories": list(record.categories)}, coco_classes).names
    if list(names) != list(record.class_names):
        raise DatasetRecordError(
            f"--coco_classes gives {source}'s categories the classes [{_shown_names(names)}], but it "
            f"was converted with [{_shown_names(record.class_names)}] ({record.class_rule}); leave "
            "--coco_classes out to use the MindRecord's, or convert again with this list"
        )


def apply_dataset_classes(cfg, pretrained, mindrecord, log):
    """(cfg, the training MindRecord's dataset record or None). Its class count is the run's when
    --num_classes is not given; a contradicting --num_classes or --coco_classes is refused, and so
    is a pre-trained file whose class count differs, unless --filter_weight replaces its head."""
    record = read_dataset_record(mindrecord)
    if record is None:
        return cfg, None
    check_class_list(cfg.model.coco_classes, "coco_classes" in cfg.explicit_keys, record, mindrecord)
    took_pretrained = (
        pretrained is not None and not cfg.training.filter_weight and "num_classes" not in cfg.explicit_keys
    )
    if took_pretrained and cfg.model.num_classes != record.num_classes:
        raise DatasetRecordError(
            f"{cfg.training.pre_trained} has {cfg.model.num_classes} classes but {mindrecord}'s dataset has "
            f"{record.num_classes} ({record.class_rule}); pass --filter_weight=True to fine-tune onto them"
        )
    cfg = apply_record_classes(cfg, record, mindrecord)
    log.info("dataset: %s (%s)", record.describe(), mindrecord)
    return cfg, record


def training_classes(model, data, filter_weight, pretrained, log, record=None, num_classes_given=True):
    """(class names background first, category id per class) of the run, or (None, None).

    From the training MindRecord's dataset record when it names its classes (apply_dataset_classes
    checked them against the options), else from the data section's training annotation file when
    it is there (the rule create_data.py used for the MindRecord's class indices), else the
    pre-trained file's classes (fine-tuning on the same classes, unless `filter_weight`), else the
    model section's coco_classes when it has num_classes names. `num_classes_given`: the user set
    --num_classes (without it, an annotation file of another class count is refused)."""
    if record is not None and record.class_names is not None:
        return list(record.class_names), list(record.category_ids or [None] * (record.num_classes - 1))
    path = annotation_path(data, data.train_data_type)
    if path.lower().endswith(".json") and os.path.isfile(path):
        try:
            cmap = class_map(load_coco_json(path), model.coco_classes)
        except AnnotationError as exc:
            log.warning("class names not taken from %s: %s", path, exc)
        else:
            if cmap.num_classes == model.num_classes:
                return list(cmap.names), [cmap.class_to_category.get(i) for i in range(1, cmap.num_classes)]
            if not num_classes_given and pretrained is None:
                # an older MindRecord (no dataset record) of another class count than the default
                raise DatasetRecordError(
                    f"{path} gives {cmap.num_classes} classes but --num_classes is the default "
                    f"{model.num_classes}, and the MindRecord has no dataset record to say which: give "
                    f"--num_classes={cmap.num_classes}, or re-create the MindRecord with create_data.py"
                )
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


def training_description(
    model, anchors, data, filter_weight, pretrained, log, record=None, num_classes_given=True
):
    """The ModelDescription every checkpoint of this run carries."""
    names, ids = training_classes(model, data, filter_weight, pretrained, log, record, num_classes_given)
    return ModelDescription.of_sections(model, anchors, names, ids)
