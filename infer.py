"""Detect objects in images and draw them.

    python infer.py --image=IMG|FOLDER|'GLOB' (--checkpoint_path=CKPT | --model_path=M.mindir|.onnx | --hub)
        [--output_dir=./outputs/infer] [--score_threshold=0.3] [--anno_path=JSON] [--device_target=CPU]

Writes <stem>_det.jpg (boxes, class names, scores) per image and detections.json (COCO result
entries in original pixels) to --output_dir: a folder that holds another run's results, or that a
running infer.py writes into, is refused (--overwrite=True replaces the earlier results; see
docs/troubleshooting.md). An exported model is fed batches of the size it was
exported with (--export_batch_size). An image that cannot be decoded (or is truncated) is
reported and skipped; the others are processed, and the exit status is then 3 (see nasfpn/core/exits.py).
A checkpoint or export of this project carries its network options and class list
(docs/checkpoints.md): they need not be repeated, its class names are drawn, and --anno_path, when
given, is matched to them by name for the category ids. A model without them (the release's) takes
class names from --anno_path when given (and category ids from its categories), else from
coco_classes in the config.
"""

# The command lives in the package (nasfpn/commands/infer.py, also `nasfpn infer`); this file is
# the release's entry point for it.
from nasfpn.commands.infer import exit_status, main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run), exit_status)
