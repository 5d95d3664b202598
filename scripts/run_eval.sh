#!/usr/bin/env bash
# COCO evaluation of a checkpoint on an eval MindRecord. Two forms:
#   bash scripts/run_eval.sh DEVICE_ID DATASET MINDRECORD_DIR CHECKPOINT_PATH ANN_FILE [--key=value ...]
#   bash scripts/run_eval.sh DEVICE_TARGET DEVICE_ID DATASET MINDRECORD_DIR CHECKPOINT_PATH ANN_FILE [--key=value ...]
# the first is the release's (Ascend, unless --device_target=GPU|CPU is given); DEVICE_TARGET is
# Ascend, GPU or CPU. ANN_FILE may hold {}, filled with the eval split (--val_data_type, val2017).
# e.g. bash scripts/run_eval.sh 0 coco /data/MindRecord_COCO ckpt/ckpt_0/retinanet-300_916.ckpt /data/coco/annotations/instances_{}.json
#      bash scripts/run_eval.sh CPU 0 coco /data/mr model.ckpt /data/coco/annotations/instances_val2017.json
# Prints the COCO table and a last line "mAP: <AP@[.5:.95]>"; log, one per run:
# outputs/eval_<DEVICE_ID>/eval_<YYYYmmdd-HHMMSS>.log (eval.log links to the newest);
# predictions.json and metrics.json in --eval_output_dir (default ./outputs/eval).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_eval.sh [DEVICE_TARGET] DEVICE_ID DATASET MINDRECORD_DIR CHECKPOINT_PATH ANN_FILE [--key=value ...]
  DEVICE_TARGET: Ascend, GPU or CPU; without it (the release's form) Ascend unless --device_target=... is given"
COMMAND=("$0" "$@")   # as typed, for the log's header
TARGET=Ascend
case "${1:-}" in Ascend|GPU|CPU) TARGET="$1"; shift ;; esac
POSITIONAL=(); OVERRIDES=()
for arg in "$@"; do
  if [[ "$arg" == --* ]]; then OVERRIDES+=("$arg"); else POSITIONAL+=("$arg"); fi
done
need_args 5 5 "${#POSITIONAL[@]}" "$USAGE"
SPLIT=val2017
for arg in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do   # the overrides are passed last, so they win
  case "$arg" in --device_target=*) TARGET="${arg#*=}" ;; --val_data_type=*) SPLIT="${arg#*=}" ;; esac
done
DEVICE_ID="${POSITIONAL[0]}" DATASET="${POSITIONAL[1]}" DATA="${POSITIONAL[2]}" CKPT="${POSITIONAL[3]}"
ANN="${POSITIONAL[4]//\{\}/$SPLIT}"
need_int "$DEVICE_ID" DEVICE_ID
need_dir "$DATA" MINDRECORD_DIR
need_file "$CKPT" CHECKPOINT_PATH
need_file "$ANN" ANN_FILE
if [ "$TARGET" = Ascend ]; then
  ls /dev/davinci* >/dev/null 2>&1 || die "no Ascend device found (/dev/davinci*): evaluating on Ascend needs one; here give DEVICE_TARGET GPU or CPU first, e.g. bash scripts/run_eval.sh CPU $DEVICE_ID $DATASET $DATA $CKPT $ANN"
fi
source "$HERE/setup_env.sh"
LOG="$(new_run_log "$REPO_ROOT/outputs/eval_$DEVICE_ID" eval "${COMMAND[@]}")"
echo "evaluating $CKPT on $TARGET $DEVICE_ID; log: $LOG"
python "$REPO_ROOT/eval.py" --device_target="$TARGET" --device_id="$DEVICE_ID" --dataset="$DATASET" \
  --mindrecord_dir="$(abspath "$DATA")" --checkpoint_path="$(abspath "$CKPT")" --anno_path="$(abspath "$ANN")" \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"} 2>&1 | tee -a "$LOG"
