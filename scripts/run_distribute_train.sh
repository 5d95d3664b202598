#!/usr/bin/env bash
# Data-parallel training on Ascend with a rank table (one process per device, as the release).
#   bash scripts/run_distribute_train.sh DEVICE_NUM RANK_TABLE_FILE MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# Without a rank table, msrun works on Ascend too:
#   msrun --worker_num=8 --local_worker_num=8 --master_port=8118 --join=True train.py --distribute=True --device_target=Ascend --mindrecord_dir=DIR
# Logs: outputs/train_ascend_<N>/device<i>/train.log; checkpoints: <save_checkpoint_path>/ckpt_<rank>.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_distribute_train.sh DEVICE_NUM RANK_TABLE_FILE MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
parse_train_args 3 "$USAGE" "$@"
need_int "${POSITIONAL[0]}" DEVICE_NUM
need_file "${POSITIONAL[1]}" RANK_TABLE_FILE
need_dir "${POSITIONAL[2]}" MINDRECORD_DIR
ls /dev/davinci* >/dev/null 2>&1 || die "no Ascend device found (/dev/davinci*); on GPU/CPU use run_distribute_train_gpu.sh / run_distribute_train_cpu.sh"
source "$HERE/setup_env.sh"
export RANK_TABLE_FILE="$(abspath "${POSITIONAL[1]}")" RANK_SIZE="${POSITIONAL[0]}"
DATA="$(abspath "${POSITIONAL[2]}")"
LOGS="$REPO_ROOT/outputs/train_ascend_${POSITIONAL[0]}"
for ((i = 0; i < RANK_SIZE; i++)); do
  mkdir -p "$LOGS/device$i"
  DEVICE_ID=$i RANK_ID=$i python "$REPO_ROOT/train.py" --distribute=True --device_target=Ascend \
     --mindrecord_dir="$DATA" ${OVERRIDES[@]+"${OVERRIDES[@]}"} > "$LOGS/device$i/train.log" 2>&1 &
  echo "rank $i started; log: $LOGS/device$i/train.log"
done
wait
