#!/usr/bin/env bash
# Data-parallel training on CPU with msrun (one process per worker on this machine).
#   bash scripts/run_distribute_train_cpu.sh DEVICE_NUM MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# e.g. bash scripts/run_distribute_train_cpu.sh 2 outputs/demo/mindrecord --config_path=configs/demo_cpu.yaml
# Several machines (msrun nodes): the same command on each, DEVICE_NUM = devices of that machine, plus
#   --node_num=M --node_rank=R --master_addr=NODE0_ADDRESS [--master_port=8118] [--cluster_timeout=600]
# node 0 first (it runs the master); the others wait up to --cluster_timeout s for it, then fail.
# Logs, one folder per run: outputs/train_cpu_<N>[_node<R>]/run_<YYYYmmdd-HHMMSS>/worker_<rank>.log (latest/ links to the newest); checkpoints: <save_checkpoint_path>/ckpt_<rank>.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
USAGE="bash scripts/run_distribute_train_cpu.sh DEVICE_NUM MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
parse_train_args 2 "$USAGE" "$@"
need_int "${POSITIONAL[0]}" DEVICE_NUM; [ "${POSITIONAL[0]}" -ge 1 ] || die "DEVICE_NUM must be >= 1"
need_dir "${POSITIONAL[1]}" MINDRECORD_DIR
take_node_options
launch_msrun CPU "${POSITIONAL[0]}" "${POSITIONAL[1]}" "$(log_dir_for cpu "${POSITIONAL[0]}")" \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"}
