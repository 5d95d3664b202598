#!/usr/bin/env bash
# Data-parallel training on CPU with msrun (one process per worker on this machine).
#   bash scripts/run_distribute_train_cpu.sh DEVICE_NUM MINDRECORD_DIR [--key=value ...]
# e.g. bash scripts/run_distribute_train_cpu.sh 2 outputs/demo/mindrecord --config_path=configs/demo_cpu.yaml
# Logs: outputs/train_cpu_<N>/worker_<rank>.log; checkpoints: <save_checkpoint_path>/ckpt_<rank>.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
launch_msrun() {  # launch_msrun TARGET N MINDRECORD_DIR LOG_DIR overrides...
  local target="$1" n="$2" data="$3" logs="$4"; shift 4
  source "$HERE/setup_env.sh"   # msrun starts the first python on PATH: the venv's
  command -v msrun >/dev/null || die "msrun not found in the venv (MindSpore >= 2.3 installs it)"
  mkdir -p "$logs"
  local port; port="$(free_port)"
  echo "msrun: $n workers on $target, master port $port; logs in $logs"
  cd "$REPO_ROOT"
  msrun --worker_num="$n" --local_worker_num="$n" --master_port="$port" --log_dir="$logs" \
    --join=True train.py --distribute=True --device_target="$target" \
    --mindrecord_dir="$(abspath "$data")" "$@" || {
      tail -n 20 "$logs"/worker_0.log >&2 || true
      die "distributed training failed; see $logs/worker_*.log"; }
  echo "done; see $logs/worker_0.log"
}
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  USAGE="bash scripts/run_distribute_train_cpu.sh DEVICE_NUM MINDRECORD_DIR [--key=value ...]"
  [ $# -ge 2 ] || { echo "usage: $USAGE" >&2; die "expected at least 2 arguments, got $#"; }
  need_int "$1" DEVICE_NUM; [ "$1" -ge 1 ] || die "DEVICE_NUM must be >= 1"
  need_dir "$2" MINDRECORD_DIR
  N="$1"; DATA="$2"; shift 2
  for a in "$@"; do [[ "$a" == --*=* ]] || die "unexpected argument '$a' (overrides are --key=value)"; done
  launch_msrun CPU "$N" "$DATA" "$(cd "$HERE/.." && pwd)/outputs/train_cpu_$N" "$@"
fi
