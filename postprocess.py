"""COCO mAP from the .bin files of the Ascend 310 app (ascend310_infer) or its twin (infer_310_twin.py).

    python postprocess.py --result_path=result_Files --dataset_path=IMAGE_DIR --anno_path=ANNO.json \
        [--img_shape=[640,640]] [--eval_output_dir=./outputs/eval]

Reads <stem>_0.bin / <stem>_1.bin for every image of --dataset_path, runs the post-processing and
COCO evaluation of eval.py, prints the 12-number table and writes predictions.json and metrics.json
to --eval_output_dir (a folder that holds an earlier run's, or is being written by another run,
is refused unless --overwrite=True; docs/troubleshooting.md). The config options (img_shape, anchors, num_classes) must match the model.
Images that infer_310_twin.py skipped (result_Files/skipped_images.txt) are left out and named;
the exit status is then 3 (see nasfpn/core/exits.py).
"""

# The command lives in the package (nasfpn/commands/postprocess.py, also `nasfpn postprocess`); this file is
# the release's entry point for it.
from nasfpn.commands.postprocess import exit_status, main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run), exit_status)
