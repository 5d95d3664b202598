"""Python twin of the Ascend 310 application: same images in, same .bin files and time file out.

    python infer_310_twin.py --model_path=retinanet_nasfpn.mindir --dataset_path=IMAGE_DIR \
        [--img_shape=[640,640]] [--device_target=CPU]

--img_shape may be left out for a model exported by this project (it carries it, docs/checkpoints.md).

Runs a .mindir with MindSpore (on --device_target) or an .onnx with ONNX Runtime, and writes
result_Files/<stem>_0.bin, result_Files/<stem>_1.bin and time_Result/test_perform_static.txt into
the working directory, like ascend310_infer/out/main (--result_path=DIR/result_Files writes them
under DIR instead). A result folder that already holds .bin files, or that another run writes into
now, is refused (--overwrite=True replaces the earlier files; docs/troubleshooting.md).
Then: postprocess.py --result_path=result_Files.
An image that cannot be decoded (or is truncated) is reported and gets no .bin files; the others
are processed and the exit status is then 3 (see nasfpn/core/exits.py).
"""

from typing import Any, Dict, Optional, Sequence

from nasfpn.config.flat import Config, load_config
from nasfpn.core.context import setup_logging
from nasfpn.core.exits import EXIT_OK, EXIT_SKIPPED_INPUTS


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return run(load_config(argv))


def run(cfg: Config) -> Dict[str, Any]:
    log = setup_logging(cfg.log_level)
    from nasfpn.deploy.app310_twin import run_twin

    summary: Dict[str, Any] = run_twin(cfg, log)
    return summary


def exit_status(summary: Any) -> int:
    """3 when some images were skipped (the .bin files cover the others), else 0."""
    return EXIT_SKIPPED_INPUTS if summary["skipped"] else EXIT_OK
