"""Export the inference network (boxes + scores) to MINDIR, AIR (Ascend) or ONNX.

    python export.py --checkpoint_path=CKPT --file_name=retinanet_nasfpn --file_format=MINDIR \
        --device_target=CPU [--export_batch_size=1] [--img_shape=[640,640]]
    python export.py --checkpoint_path=CKPT --file_format=ONNX --quantize=int8 \
        --calibration_data=MINDRECORD_OR_IMAGE_FOLDER [--calibration_images=100]

With --quantize=int8 the float32 ONNX model is written as usual and its static INT8 twin beside it
as <file_name>_int8.onnx (nasfpn/deploy/quantize.py says how it is quantized).

With --export_detections=True (ONNX) the graph ends in final detections per image: score
threshold, per-class NMS and the per-image cap --export_max_detections run inside it
(nasfpn/deploy/detections_graph.py; with --quantize=int8 both files are detections graphs).

A checkpoint of this project carries its network options and class list: they need not be given
again, and the export carries them on (docs/checkpoints.md).
"""

# The command lives in the package (nasfpn/commands/export.py, also `nasfpn export`); this file is
# the release's entry point for it.
from nasfpn.commands.export import main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
