"""Detect objects in images and draw them.

    python infer.py --image=IMG|FOLDER|'GLOB' (--checkpoint_path=CKPT | --model_path=M.mindir|.onnx | --hub)
        [--output_dir=./outputs/infer] [--score_threshold=0.3] [--anno_path=JSON] [--device_target=CPU]

Writes <stem>_det.jpg (boxes, class names, scores) per image and detections.json (COCO result
entries in original pixels) to --output_dir: a folder that holds another run's results, or that a
running infer.py writes into, is refused (--overwrite=True replaces the earlier results; see
docs/troubleshooting.md). An exported model is fed batches of the size it was
exported with (--export_batch_size). An image that cannot be decoded (or is truncated) is
reported and skipped; the others are processed, and the exit status is then 3 (see src/cli.py). Class names come from --anno_path when given (and
category ids from its categories), else from coco_classes in the config.
"""
import os

from src.config import ConfigError, load_config
from src.context import set_context, setup_logging
from src.modelarts import modelarts_entry
from src.cli import EXIT_OK, EXIT_SKIPPED_INPUTS, run_entry_point


def check_model_choice(cfg):
    chosen = [k for k in ("checkpoint_path", "model_path", "hub") if getattr(cfg, k)]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --checkpoint_path (a .ckpt), --model_path (a .mindir "
                          f"or .onnx) or --hub (the published checkpoint); got {chosen or 'none'}")


def open_model(cfg, log):
    """A runtime from the one of --checkpoint_path, --model_path, --hub that is given."""
    from src.deploy.runtimes import open_runtime
    if cfg.model_path:
        if cfg.model_path.lower().endswith(".mindir"):
            set_context(cfg)
        return open_runtime(cfg.model_path, cfg.num_threads)
    from src.deploy.build import build_inference_network
    from src.deploy.hub import expected_sha256, published_checkpoint
    path = published_checkpoint(cfg) if cfg.hub else cfg.checkpoint_path
    log.info("loading %s", path)
    set_context(cfg)
    return open_runtime(build_inference_network(cfg, path, expected_sha256(cfg, path)))


def class_names_and_ids(cfg):
    """(names by class index, class index -> category id, file name -> image id)."""
    if not cfg.anno_path:
        names = list(cfg.coco_classes)
        if len(names) != cfg.num_classes:
            raise ConfigError(f"--coco_classes has {len(names)} names but --num_classes is "
                              f"{cfg.num_classes}; give --anno_path for another dataset's classes")
        return names, {}, {}
    from src.data.coco_format import (check_num_classes, class_map, image_id_by_file_name,
                                      load_coco_json)
    coco = load_coco_json(cfg.anno_path)
    cmap = class_map(coco, cfg.coco_classes)  # the rule create_data.py used
    check_num_classes(cmap, cfg.num_classes, cfg.anno_path)
    return list(cmap.names), cmap.class_to_category, image_id_by_file_name(coco)


def main(argv=None):
    """Returns the DetectionRun (results, skipped files)."""
    cfg = load_config(argv)
    log = setup_logging(cfg.log_level)
    from src.evaluation.detect_images import INFER_RESULT_FILES, list_images
    from src.storage import claim_output_dir
    check_model_choice(cfg)
    paths = list_images(cfg.image)
    # One writer per folder, room for the pictures (about the inputs' size): before the model loads.
    need = sum(os.path.getsize(p) for p in paths) + 64 * 1024
    with claim_output_dir(cfg.output_dir, "output_dir", INFER_RESULT_FILES, cfg.overwrite, need):
        return detect(cfg, paths, log)


def detect(cfg, paths, log):
    from src.deploy.runtimes import check_runtime_classes, check_runtime_input, model_batch_size
    from src.evaluation.detect_images import detect_images
    names, to_category, ids_by_name = class_names_and_ids(cfg)
    runtime = open_model(cfg, log)
    check_runtime_input(runtime, cfg.img_shape, model_batch_size(runtime))
    check_runtime_classes(runtime, len(names))
    run = detect_images(runtime, paths, cfg, names, cfg.output_dir, cfg.score_threshold,
                        to_category, ids_by_name, log=log, draw_score_threshold=cfg.draw_score_threshold)
    log.info("%d images, %d detections with score >= %.2f; images and detections.json in %s",
             run.processed, len(run.results), cfg.score_threshold, os.path.abspath(cfg.output_dir))
    if run.skipped:
        log.warning("%d of %d images skipped (not decodable or truncated): %s", len(run.skipped),
                    len(paths), ", ".join(os.path.basename(p) for p, _ in run.skipped))
    return run


def exit_status(run):
    """3 when some images were skipped (the outputs cover the others), else 0."""
    return EXIT_SKIPPED_INPUTS if run.skipped else EXIT_OK


if __name__ == "__main__":
    run_entry_point(modelarts_entry(main), exit_status)
