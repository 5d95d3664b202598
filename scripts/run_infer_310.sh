#!/usr/bin/env bash
# Ascend 310 inference + COCO mAP: build ascend310_infer, run it on every image of DATA_PATH, then
# postprocess.py on the .bin files it wrote.
#
#   bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH ANNO_PATH [DEVICE_ID] [--key=value ...]
#
#   MINDIR_PATH  model exported by export.py (--file_format=MINDIR, --export_batch_size=1)
#   DATA_PATH    folder of images (e.g. COCO val2017/)
#   ANNO_PATH    COCO annotation JSON of those images (e.g. annotations/instances_val2017.json)
#   DEVICE_ID    Ascend 310 device id, default 0 (the 4th argument; the release read it from the 3rd)
#   --key=value  config overrides for the network input / post-processing, e.g. --img_shape=[640,640]
#
# Environment: OUT_DIR (default outputs/infer_310 under the repo) receives result_Files/ and
# time_Result/ (replaced by each run) and this run's logs build_<YYYYmmdd-HHMMSS>.log, infer_<...>.log
# and acc_<...>.log (earlier runs' logs are kept; build.log, infer.log, acc.log link to the newest). PYTHON picks the interpreter (default: the repo's
# .venv if present, else python3). MINDSPORE_PATH is passed to ascend310_infer/build.sh.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE="usage: bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH ANNO_PATH [DEVICE_ID] [--key=value ...]"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"  # die, abspath

[ $# -ge 3 ] || { echo "$USAGE" >&2; die "expected at least 3 arguments, got $#"; }
[ -f "$1" ] || die "MINDIR_PATH is not a file: $1"
[ -d "$2" ] || die "DATA_PATH is not a folder: $2"
[ -f "$3" ] || die "ANNO_PATH is not a file: $3"
MINDIR_PATH="$(abspath "$1")"; DATA_PATH="$(abspath "$2")"; ANNO_PATH="$(abspath "$3")"
shift 3
DEVICE_ID=0
if [ $# -ge 1 ] && [[ "$1" != --* ]]; then
  [[ "$1" =~ ^[0-9]+$ ]] || die "DEVICE_ID must be a non-negative integer, got '$1'"
  DEVICE_ID="$1"; shift
fi
for arg in "$@"; do
  [[ "$arg" == --*=* ]] || { echo "$USAGE" >&2; die "unexpected argument '$arg' (overrides are --key=value)"; }
done
OVERRIDES=("$@")

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "Python interpreter '$PYTHON' not found (set PYTHON)"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"
# The network input size comes from the config (+ overrides), as it did for export.py.
IMG_SHAPE="$("$PYTHON" -c 'import sys
from nasfpn.config.flat import ConfigError, load_config
try:
    print(*load_config(sys.argv[1:]).img_shape)
except ConfigError as exc:
    sys.exit(f"run_infer_310.sh: error: {exc}")' ${OVERRIDES[@]+"${OVERRIDES[@]}"})" || exit 1
read -r IMAGE_HEIGHT IMAGE_WIDTH <<< "$IMG_SHAPE"

OUT_DIR="${OUT_DIR:-$REPO_ROOT/outputs/infer_310}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
rm -rf "$OUT_DIR/result_Files" "$OUT_DIR/time_Result" "$OUT_DIR/predictions.json" "$OUT_DIR/metrics.json"   # this script's earlier outputs: no stale files
BUILD_LOG="$(new_run_log "$OUT_DIR" build "$0" "$@")"; INFER_LOG="$(new_run_log "$OUT_DIR" infer "$0" "$@")"
ACC_LOG="$(new_run_log "$OUT_DIR" acc "$0" "$@")"
echo "[310] logs and results in $OUT_DIR ($(basename "$BUILD_LOG"), $(basename "$INFER_LOG"), $(basename "$ACC_LOG"))"

echo "[310] building ascend310_infer (log: $BUILD_LOG)"
bash "$REPO_ROOT/ascend310_infer/build.sh" >> "$BUILD_LOG" 2>&1 || {
  tail -n 5 "$BUILD_LOG" >&2
  die "building the Ascend 310 app failed; see $BUILD_LOG"
}

echo "[310] inference on $DATA_PATH, device $DEVICE_ID, input ${IMAGE_HEIGHT}x${IMAGE_WIDTH} (log: $INFER_LOG)"
(cd "$OUT_DIR" && "$REPO_ROOT/ascend310_infer/out/main" --mindir_path="$MINDIR_PATH" \
    --dataset_path="$DATA_PATH" --device_id="$DEVICE_ID" \
    --image_height="$IMAGE_HEIGHT" --image_width="$IMAGE_WIDTH") >> "$INFER_LOG" 2>&1 || {
  tail -n 5 "$INFER_LOG" >&2
  die "the Ascend 310 app failed; see $INFER_LOG"
}
cat "$OUT_DIR/time_Result/test_perform_static.txt"

echo "[310] mAP (log: $ACC_LOG)"
if ! "$PYTHON" "$REPO_ROOT/postprocess.py" --result_path="$OUT_DIR/result_Files" --dataset_path="$DATA_PATH" \
    --anno_path="$ANNO_PATH" --eval_output_dir="$OUT_DIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"} 2>&1 \
    | tee -a "$ACC_LOG"; then
  die "postprocess.py failed; see $ACC_LOG"
fi
