#!/usr/bin/env bash
# Data-parallel training on GPUs with msrun.
#   bash scripts/run_distribute_train_gpu.sh DEVICE_NUM MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]
# Logs: outputs/train_gpu_<N>/worker_<rank>.log; checkpoints: <save_checkpoint_path>/ckpt_<rank>.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/run_distribute_train_cpu.sh"
USAGE="bash scripts/run_distribute_train_gpu.sh DEVICE_NUM MINDRECORD_DIR [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE] [--key=value ...]"
POSITIONAL=(); OVERRIDES=()
for a in "$@"; do if [[ "$a" == --* ]]; then OVERRIDES+=("$a"); else POSITIONAL+=("$a"); fi; done
N=${#POSITIONAL[@]}
need_args 2 4 "$N" "$USAGE"
[ "$N" -ne 3 ] || die "PRE_TRAINED needs PRE_TRAINED_EPOCH_SIZE too"
need_int "${POSITIONAL[0]}" DEVICE_NUM
need_dir "${POSITIONAL[1]}" MINDRECORD_DIR
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || die "no NVIDIA GPU found (nvidia-smi -L failed)"
if [ "$N" -eq 4 ]; then
  need_file "${POSITIONAL[2]}" PRE_TRAINED; need_int "${POSITIONAL[3]}" PRE_TRAINED_EPOCH_SIZE
  OVERRIDES+=(--pre_trained="$(abspath "${POSITIONAL[2]}")" --pre_trained_epoch_size="${POSITIONAL[3]}")
fi
launch_msrun GPU "${POSITIONAL[0]}" "${POSITIONAL[1]}" "$(cd "$HERE/.." && pwd)/outputs/train_gpu_${POSITIONAL[0]}" \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"}
