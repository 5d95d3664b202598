#!/usr/bin/env bash
# Data-parallel training on Ascend with a rank table (one process per device, as the release).
#   bash scripts/run_distribute_train.sh DEVICE_NUM RANK_TABLE_FILE MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# the release's form, unchanged. DEVICE_NUM is the number of devices of this server; a rank table
# of several servers is started by running the script on each server (this server is found in
# the table by its address, or named by SERVER_ID=<server_id> in the environment), and RANK_ID
# comes from the table. The table is checked against DEVICE_NUM before anything starts.
# Without a rank table, msrun works on Ascend too:
#   msrun --worker_num=8 --local_worker_num=8 --master_port=8118 --join=True train.py --distribute=True --device_target=Ascend --mindrecord_dir=DIR
# Logs: outputs/train_ascend_<N>/device<i>/train_<YYYYmmdd-HHMMSS>.log, one per run (train.log links
# to the newest); checkpoints: <save_checkpoint_path>/ckpt_<rank>.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_distribute_train.sh DEVICE_NUM RANK_TABLE_FILE MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
parse_train_args 3 "$USAGE" "$@"
need_int "${POSITIONAL[0]}" DEVICE_NUM
need_file "${POSITIONAL[1]}" RANK_TABLE_FILE
need_dir "${POSITIONAL[2]}" MINDRECORD_DIR
source "$HERE/setup_env.sh"
PLAN="$(python -m nasfpn.jobs.rank_table "${POSITIONAL[1]}" "${POSITIONAL[0]}" ${SERVER_ID:+"$SERVER_ID"})" \
  || die "the rank table does not fit this launch (see above)"
ls /dev/davinci* >/dev/null 2>&1 || die "no Ascend device found (/dev/davinci*): this form needs Ascend; on GPU/CPU use run_distribute_train_gpu.sh / run_distribute_train_cpu.sh"
export RANK_TABLE_FILE="$(abspath "${POSITIONAL[1]}")"
RANK_SIZE="$(sed -n 's/^RANK_SIZE //p' <<< "$PLAN")"; export RANK_SIZE
DATA="$(abspath "${POSITIONAL[2]}")"
LOGS="$REPO_ROOT/outputs/train_ascend_${POSITIONAL[0]}"
while read -r device rank; do
  LOG="$(new_run_log "$LOGS/device$device" train "$0" "$@")"
  DEVICE_ID=$device RANK_ID=$rank python "$REPO_ROOT/train.py" --distribute=True --device_target=Ascend \
     --mindrecord_dir="$DATA" ${OVERRIDES[@]+"${OVERRIDES[@]}"} >> "$LOG" 2>&1 &
  echo "rank $rank (device $device of $RANK_SIZE) started; log: $LOG"
done < <(grep -v '^RANK_SIZE ' <<< "$PLAN")
wait
