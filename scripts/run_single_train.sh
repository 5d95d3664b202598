#!/usr/bin/env bash
# Train on one device.
#   bash scripts/run_single_train.sh DEVICE_TARGET DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# e.g. bash scripts/run_single_train.sh Ascend 0 /data/mindrecord
# Log: outputs/train_single/train.log (in the repository); checkpoints: ./ckpt/ckpt_0 (from the
# current directory, like every relative path) unless --save_checkpoint_path is given.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_single_train.sh DEVICE_TARGET DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
parse_train_args 3 "$USAGE" "$@"
case "${POSITIONAL[0]}" in Ascend|GPU|CPU) ;; *) die "DEVICE_TARGET must be Ascend, GPU or CPU, got '${POSITIONAL[0]}'";; esac
need_int "${POSITIONAL[1]}" DEVICE_ID
need_dir "${POSITIONAL[2]}" MINDRECORD_DIR
source "$HERE/setup_env.sh"
LOG_DIR="$REPO_ROOT/outputs/train_single"; mkdir -p "$LOG_DIR"
echo "training on ${POSITIONAL[0]} ${POSITIONAL[1]}; log: $LOG_DIR/train.log"
python "$REPO_ROOT/train.py" --device_target="${POSITIONAL[0]}" --device_id="${POSITIONAL[1]}" \
  --mindrecord_dir="$(abspath "${POSITIONAL[2]}")" ${OVERRIDES[@]+"${OVERRIDES[@]}"} \
  2>&1 | tee "$LOG_DIR/train.log"
