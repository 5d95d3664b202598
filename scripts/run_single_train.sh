#!/usr/bin/env bash
# Train on one device. Two forms:
#   bash scripts/run_single_train.sh DEVICE_TARGET DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
#   bash scripts/run_single_train.sh DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# the second is the release's: Ascend. e.g.
#   bash scripts/run_single_train.sh CPU 0 /data/mindrecord
#   bash scripts/run_single_train.sh 0 /data/mindrecord          # Ascend device 0
# Log: outputs/train_single/train_<YYYYmmdd-HHMMSS>.log (in the repository), one per run, with
# train.log linking to the newest; checkpoints: ./ckpt/ckpt_0 (from the current directory, like
# every relative path) unless --save_checkpoint_path is given.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_single_train.sh [DEVICE_TARGET] DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
  DEVICE_TARGET: Ascend, GPU or CPU; without it (the release's form) Ascend"
COMMAND=("$0" "$@")   # as typed, for the log's header
FIRST="${1:-}"
case "$FIRST" in
  Ascend|GPU|CPU) TARGET="$FIRST"; shift ;;
  [0-9]*) TARGET=Ascend ;;   # the release's form: DEVICE_ID first
  *) echo "usage: $USAGE" >&2; die "the first argument must be DEVICE_TARGET (Ascend, GPU or CPU) or DEVICE_ID (the release's form), got '$FIRST'" ;;
esac
parse_train_args 2 "$USAGE" "$@"
need_int "${POSITIONAL[0]}" DEVICE_ID
need_dir "${POSITIONAL[1]}" MINDRECORD_DIR
if [ "$TARGET" = Ascend ]; then
  ls /dev/davinci* >/dev/null 2>&1 || die "no Ascend device found (/dev/davinci*): training on Ascend needs one; here give DEVICE_TARGET GPU or CPU first, e.g. bash scripts/run_single_train.sh CPU ${POSITIONAL[0]} ${POSITIONAL[1]}"
fi
source "$HERE/setup_env.sh"
LOG="$(new_run_log "$REPO_ROOT/outputs/train_single" train "${COMMAND[@]}")"
echo "training on $TARGET ${POSITIONAL[0]}; log: $LOG"
python "$REPO_ROOT/train.py" --device_target="$TARGET" --device_id="${POSITIONAL[0]}" \
  --mindrecord_dir="$(abspath "${POSITIONAL[1]}")" ${OVERRIDES[@]+"${OVERRIDES[@]}"} \
  2>&1 | tee -a "$LOG"
