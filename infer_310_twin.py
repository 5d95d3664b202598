"""Python twin of the Ascend 310 application: same images in, same .bin files and time file out.

    python infer_310_twin.py --model_path=retinanet_nasfpn.mindir --dataset_path=IMAGE_DIR \
        [--img_shape=[640,640]] [--device_target=CPU]

Runs a .mindir with MindSpore (on --device_target) or an .onnx with ONNX Runtime, and writes
result_Files/<stem>_0.bin, result_Files/<stem>_1.bin and time_Result/test_perform_static.txt into
the working directory, like ascend310_infer/out/main (--result_path=DIR/result_Files writes them
under DIR instead). A result folder that already holds .bin files, or that another run writes into
now, is refused (--overwrite=True replaces the earlier files; docs/troubleshooting.md).
Then: postprocess.py --result_path=result_Files.
An image that cannot be decoded (or is truncated) is reported and gets no .bin files; the others
are processed and the exit status is then 3 (see src/cli.py).
"""
import os

from src.config import ConfigError, load_config
from src.context import set_context, setup_logging
from src.modelarts import modelarts_entry
from src.cli import EXIT_OK, EXIT_SKIPPED_INPUTS, run_entry_point


def main(argv=None):
    cfg = load_config(argv)
    log = setup_logging(cfg.log_level)
    from src.deploy.app310_twin import TWIN_RESULT_FILES, twin_output_dirs
    from src.storage import check_output_dir, claim_output_dir
    if not cfg.model_path:
        raise ConfigError("--model_path: expected an exported .mindir or .onnx file")
    if not cfg.dataset_path:
        raise ConfigError("--dataset_path: expected a folder of images")
    result_dir, time_dir = twin_output_dirs(cfg.result_path)
    check_output_dir(time_dir)
    # One writer per result folder (docs/troubleshooting.md), claimed before the model loads.
    with claim_output_dir(result_dir, "result_path", TWIN_RESULT_FILES, cfg.overwrite):
        return run_twin(cfg, result_dir, time_dir, log)


def run_twin(cfg, result_dir, time_dir, log):
    from src.deploy.app310_twin import run_app
    from src.deploy.runtimes import check_runtime_input, open_runtime
    if cfg.model_path.lower().endswith(".mindir"):
        set_context(cfg)
    runtime = open_runtime(cfg.model_path, cfg.num_threads)
    check_runtime_input(runtime, cfg.img_shape)
    summary = run_app(runtime, cfg.dataset_path, tuple(cfg.img_shape), result_dir, time_dir, log=log)
    log.info("%d images -> %s; mean model time %.3f ms/img, end to end %.3f s/img",
             summary["count"], summary["result_dir"], summary["mean_model_ms"],
             summary["wall_seconds"] / summary["count"])
    if summary["skipped"]:
        log.warning("%d images skipped (not decodable or truncated; no .bin files): %s",
                    len(summary["skipped"]), ", ".join(os.path.basename(p) for p, _ in summary["skipped"]))
    return summary


def exit_status(summary):
    """3 when some images were skipped (the .bin files cover the others), else 0."""
    return EXIT_SKIPPED_INPUTS if summary["skipped"] else EXIT_OK


if __name__ == "__main__":
    run_entry_point(modelarts_entry(main), exit_status)
