#!/usr/bin/env bash
# Data-parallel training on GPUs with msrun.
#   bash scripts/run_distribute_train_gpu.sh DEVICE_NUM MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# Several machines (msrun nodes): the same command on each, DEVICE_NUM = devices of that machine, plus
#   --node_num=M --node_rank=R --master_addr=NODE0_ADDRESS [--master_port=8118] [--cluster_timeout=600]
# node 0 first (it runs the master); the others wait up to --cluster_timeout s for it, then fail.
# Logs, one folder per run: outputs/train_gpu_<N>[_node<R>]/run_<YYYYmmdd-HHMMSS>/worker_<rank>.log (latest/ links to the newest); checkpoints: <save_checkpoint_path>/ckpt_<rank>.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_distribute_train_gpu.sh DEVICE_NUM MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
parse_train_args 2 "$USAGE" "$@"
need_int "${POSITIONAL[0]}" DEVICE_NUM
need_dir "${POSITIONAL[1]}" MINDRECORD_DIR
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || die "no NVIDIA GPU found (nvidia-smi -L failed)"
take_node_options
launch_msrun GPU "${POSITIONAL[0]}" "${POSITIONAL[1]}" "$(log_dir_for gpu "${POSITIONAL[0]}")" \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"}
