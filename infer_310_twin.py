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

# The command lives in the package (nasfpn/commands/infer_310_twin.py, also `nasfpn infer_310_twin`); this file is
# the release's entry point for it.
from nasfpn.commands.infer_310_twin import exit_status, main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run), exit_status)
