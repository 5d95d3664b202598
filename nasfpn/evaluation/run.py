"""eval.py's run: the config's model over the eval MindRecord set, COCO metrics written out."""

import os

from nasfpn.data.converters import find_mindrecord
from nasfpn.data.dataset_record import annotation_given, apply_record_classes, eval_annotation
from nasfpn.data.layout import EVAL_PREFIX
from nasfpn.core.errors import UserFileNotFoundError
from nasfpn.model_files.description import config_for_model
from nasfpn.inference.open_model import open_model
from nasfpn.inference.runtimes import describe_model_run, model_batch_size
from nasfpn.inference.tta import with_test_time_augmentation
from nasfpn.core.storage import check_free_space, claim_output_dir
from nasfpn.evaluation.scoring import (
    EVAL_RESULT_FILES,
    DetectionCollector,
    check_annotations_cover,
    expected_results_bytes,
    mindrecord_image_ids,
    result_sources,
    run_network,
)
from nasfpn.evaluation.report import (
    EVAL_OUTPUT_FILES,
    analysis_errors,
    mindrecord_image_loader,
    write_analysis,
)


def evaluate_model(cfg, log):
    """eval.py: the config's model (checkpoint, exported file or hub) over the eval MindRecord;
    writes predictions.json, metrics.json (with per-class rows), analysis.json, the plots and
    report.html into the evaluation section's eval_output_dir (nasfpn/evaluation/report.py) and
    returns the stats. With --tta_flip / --tta_scales the model runs through
    nasfpn/inference/tta.py. Everything that can be checked without running the model is checked
    first; the output folder is claimed first of all (one writer; another run's results refused
    unless --overwrite)."""
    from nasfpn.data.pipeline import create_eval_dataset

    claim = claim_output_dir(
        cfg.evaluation.eval_output_dir,
        "eval_output_dir",
        EVAL_RESULT_FILES,
        cfg.job.overwrite,
        output_patterns=EVAL_OUTPUT_FILES,
    )
    # a fresh folder that replaces eval_output_dir at the end with --overwrite
    with claim as output_dir:
        cfg.inference.check_model_choice()
        # A checkpoint or export of this project says which network it is and what its classes are.
        cfg, description = config_for_model(cfg, cfg.inference.model_file)
        mindrecord = eval_mindrecord(cfg.data)
        # the ground truth and (for a model that does not say) the classes: what the MindRecord recorded
        anno_path, record = eval_annotation(cfg.data, annotation_given(cfg.explicit_keys), mindrecord, log)
        if description is None:
            cfg = apply_record_classes(cfg, record, mindrecord)
        collector = DetectionCollector.from_sections(
            cfg.model,
            cfg.postprocess,
            anno_path,
            description.class_names if description else None,
            cfg.inference.model_file,
        )
        image_ids = mindrecord_image_ids(mindrecord)
        check_annotations_cover(collector.coco, anno_path, image_ids, mindrecord)
        check_free_space(
            output_dir,
            expected_results_bytes(len(image_ids)),
            f"--eval_output_dir={cfg.evaluation.eval_output_dir}",
        )
        runtime, model = open_model(cfg, num_classes=cfg.model.num_classes)
        runtime = with_test_time_augmentation(
            runtime, cfg.inference.tta_flip, cfg.inference.tta_scales, cfg.model.img_shape, cfg.anchors
        )
        batch_size = model_batch_size(runtime)
        dataset = create_eval_dataset(
            mindrecord, cfg.model.img_shape, cfg.data.num_parallel_workers, batch_size=batch_size
        )
        log.info(
            "evaluating %s on %s (%d images, batch %d)",
            describe_model_run(model, runtime) if cfg.inference.model_path else f"{model} in {runtime.name}",
            mindrecord,
            len(image_ids),
            batch_size,
        )
        collector.sources = result_sources(model, anno_path, mindrecord, record)
        return evaluate_and_report(
            runtime, dataset, collector, model, mindrecord, cfg.evaluation, log, output_dir
        )


def evaluate_and_report(runtime, dataset, collector, model, mindrecord, evaluation, log, output_dir):
    """Run the model over the dataset into `collector`; write the metrics and the analysis into
    `output_dir` (the evaluation section's eval_output_dir, or with --overwrite the fresh folder
    that replaces it at the end); returns the stats."""
    images_per_second = run_network(runtime, dataset, collector, model_name=model)
    if collector.size_mismatch_warning():
        log.warning("%s", collector.size_mismatch_warning())
    stats = collector.evaluate(output_dir)
    # Into a fresh folder (--overwrite): a failure removes it and leaves the earlier folder.
    with analysis_errors(evaluation.eval_output_dir, kept_earlier=output_dir != evaluation.eval_output_dir):
        write_analysis(
            collector,
            stats,
            output_dir,
            mindrecord_image_loader(mindrecord),
            evaluation.report_images,
            evaluation.analysis_score_threshold,
            log,
        )
    log.info(
        "%.2f images/s; %d detections; predictions.json, metrics.json and report.html in %s",
        images_per_second,
        len(collector.detections),
        os.path.abspath(evaluation.eval_output_dir),
    )
    return stats


def eval_mindrecord(data):
    """The first file of the data section's eval MindRecord set; the error says how to create it."""
    try:
        return find_mindrecord(data.mindrecord_dir, data.prefix or EVAL_PREFIX)
    except FileNotFoundError as exc:
        raise UserFileNotFoundError(
            f"{exc}: python create_data.py --create_dataset={data.dataset} "
            f"--is_training=false --coco_root={data.coco_root} "
            f"--mindrecord_dir={data.mindrecord_dir}"
        ) from None
