#!/usr/bin/env bash
# The Ascend 310 flow without an Ascend 310: the Python twin of ascend310_infer writes the same
# result_Files/*.bin and time_Result/ files, then postprocess.py computes the COCO mAP from them.
#
#   bash scripts/run_infer_twin.sh MODEL_PATH DATA_PATH ANNO_PATH [--key=value ...]
#
#   MODEL_PATH   exported .mindir (run by MindSpore on --device_target, default CPU) or .onnx (ONNX Runtime)
#   DATA_PATH    folder of images;  ANNO_PATH  COCO annotation JSON of those images
#   --key=value  config overrides, e.g. --img_shape=[640,640] (must match the exported model)
# OUT_DIR (default outputs/infer_twin under the repo) receives result_Files/, time_Result/ (both
# replaced by each run) and this run's logs infer_<YYYYmmdd-HHMMSS>.log and acc_<...>.log (earlier
# runs' logs are kept; infer.log and acc.log link to the newest).
set -euo pipefail
USAGE="usage: bash scripts/run_infer_twin.sh MODEL_PATH DATA_PATH ANNO_PATH [--key=value ...]"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"  # die, abspath
[ $# -ge 3 ] || { echo "$USAGE" >&2; die "expected at least 3 arguments, got $#"; }
[ -f "$1" ] || die "MODEL_PATH is not a file: $1"
[ -d "$2" ] || die "DATA_PATH is not a folder: $2"
[ -f "$3" ] || die "ANNO_PATH is not a file: $3"
MODEL_PATH="$(abspath "$1")"; DATA_PATH="$(abspath "$2")"; ANNO_PATH="$(abspath "$3")"
shift 3
for arg in "$@"; do
  [[ "$arg" == --*=* ]] || { echo "$USAGE" >&2; die "unexpected argument '$arg' (overrides are --key=value)"; }
done
OVERRIDES=("$@")

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
OUT_DIR="${OUT_DIR:-$REPO_ROOT/outputs/infer_twin}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
rm -rf "$OUT_DIR/result_Files" "$OUT_DIR/time_Result" "$OUT_DIR/predictions.json" "$OUT_DIR/metrics.json"   # this script's earlier outputs: no stale files
INFER_LOG="$(new_run_log "$OUT_DIR" infer "$0" "$@")"; ACC_LOG="$(new_run_log "$OUT_DIR" acc "$0" "$@")"
echo "[twin] logs and results in $OUT_DIR ($(basename "$INFER_LOG"), $(basename "$ACC_LOG"))"

echo "[twin] inference with $MODEL_PATH on $DATA_PATH (log: $INFER_LOG)"
# Run from the caller's directory (relative paths in overrides and config files mean what they
# say); the twin writes result_Files/ and time_Result/ into OUT_DIR.
# Exit status 3 = finished, some images skipped (nasfpn/core/exits.py): go on, and end with 3 as well.
SKIPPED=3
status=0
python "$REPO_ROOT/infer_310_twin.py" --model_path="$MODEL_PATH" --dataset_path="$DATA_PATH" \
    ${OVERRIDES[@]+"${OVERRIDES[@]}"} --result_path="$OUT_DIR/result_Files" >> "$INFER_LOG" 2>&1 || status=$?
if [ "$status" -eq "$SKIPPED" ]; then
  echo "[twin] warning: images skipped (not decodable), listed in $OUT_DIR/result_Files/skipped_images.txt" >&2
elif [ "$status" -ne 0 ]; then
  tail -n 5 "$INFER_LOG" >&2
  die "infer_310_twin.py failed; see $INFER_LOG"
fi
cat "$OUT_DIR/time_Result/test_perform_static.txt"

echo "[twin] mAP (log: $ACC_LOG)"
status=0
python "$REPO_ROOT/postprocess.py" --result_path="$OUT_DIR/result_Files" --dataset_path="$DATA_PATH" \
    --anno_path="$ANNO_PATH" --eval_output_dir="$OUT_DIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"} 2>&1 \
    | tee -a "$ACC_LOG" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne "$SKIPPED" ]; then
  die "postprocess.py failed; see $ACC_LOG"
fi
exit "$status"
