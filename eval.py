"""COCO bbox evaluation of a checkpoint or an exported model on an eval MindRecord
(docs/conventions.md#post-processing-and-nms).

    python eval.py (--checkpoint_path=CKPT | --model_path=M.mindir|.onnx | --hub) --mindrecord_dir=DIR
        [--anno_path=JSON | --coco_root=COCO] [--device_target=CPU] [--eval_output_dir=./outputs/eval]

The ground truth is the annotation file the MindRecord's dataset record names (docs/data.md#the-dataset-record);
--anno_path / --coco_root override it (checked against the record) and are needed for a MindRecord
made by an older version.

An exported model (MINDIR, ONNX, INT8 ONNX) goes through the same post-processing and metrics as a
checkpoint; it is fed batches of the size it was exported with (--export_batch_size).

Prints the 12-number COCO table; writes predictions.json and metrics.json to --eval_output_dir,
which must not hold another run's results (--overwrite=True replaces them) nor be in use by a
running evaluation (docs/troubleshooting.md).
"""

# The command lives in the package (nasfpn/commands/eval.py, also `nasfpn eval`); this file is
# the release's entry point for it.
from nasfpn.commands.eval import main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
