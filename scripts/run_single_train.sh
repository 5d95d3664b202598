#!/usr/bin/env bash
# Train on one device.
#   bash scripts/run_single_train.sh DEVICE_TARGET DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# e.g. bash scripts/run_single_train.sh Ascend 0 /data/mindrecord
# Log: outputs/train_single/train.log; checkpoints: ./ckpt/ckpt_0 unless --save_checkpoint_path is given.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_single_train.sh DEVICE_TARGET DEVICE_ID MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
POSITIONAL=(); OVERRIDES=()
for a in "$@"; do if [[ "$a" == --* ]]; then OVERRIDES+=("$a"); else POSITIONAL+=("$a"); fi; done
N=${#POSITIONAL[@]}
need_args 3 5 "$N" "$USAGE"
[ "$N" -ne 4 ] || die "PRE_TRAINED needs PRE_TRAINED_EPOCH_SIZE too"
case "${POSITIONAL[0]}" in Ascend|GPU|CPU) ;; *) die "DEVICE_TARGET must be Ascend, GPU or CPU, got '${POSITIONAL[0]}'";; esac
need_int "${POSITIONAL[1]}" DEVICE_ID
need_dir "${POSITIONAL[2]}" MINDRECORD_DIR
EXTRA=()
if [ "$N" -eq 5 ]; then
  need_file "${POSITIONAL[3]}" PRE_TRAINED
  need_int "${POSITIONAL[4]}" PRE_TRAINED_EPOCH_SIZE
  EXTRA=(--pre_trained="$(abspath "${POSITIONAL[3]}")" --pre_trained_epoch_size="${POSITIONAL[4]}")
fi
source "$HERE/setup_env.sh"
LOG_DIR="$REPO_ROOT/outputs/train_single"; mkdir -p "$LOG_DIR"
echo "training on ${POSITIONAL[0]} ${POSITIONAL[1]}; log: $LOG_DIR/train.log"
cd "$REPO_ROOT"
python train.py --device_target="${POSITIONAL[0]}" --device_id="${POSITIONAL[1]}" \
  --mindrecord_dir="$(abspath "${POSITIONAL[2]}")" ${EXTRA[@]+"${EXTRA[@]}"} ${OVERRIDES[@]+"${OVERRIDES[@]}"} \
  2>&1 | tee "$LOG_DIR/train.log"
