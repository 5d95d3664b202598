#!/usr/bin/env bash
# Helpers for the run_*.sh scripts: argument checks that fail early with a clear message, the
# training scripts' shared argument form, and the msrun launch.
#
# Paths: every relative path (arguments, --key=value overrides, paths inside a --config_path file)
# means relative to the directory the script was started from, as for any command-line tool. The
# scripts therefore never cd before running Python; they call "$REPO_ROOT/<entry point>.py".
COMMON_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }
need_args() {  # need_args MIN MAX COUNT USAGE
  if [ "$3" -lt "$1" ] || [ "$3" -gt "$2" ]; then
    echo "usage: $4" >&2
    die "expected $1..$2 arguments, got $3"
  fi
}
need_dir() { [ -d "$1" ] || die "$2 is not a directory: $1"; }
need_file() { [ -f "$1" ] || die "$2 is not a file: $1"; }
need_int() { [[ "$1" =~ ^[0-9]+$ ]] || die "$2 must be a non-negative integer, got '$1'"; }
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# parse_train_args NUM_REQUIRED USAGE "$@"
# The training scripts' form: NUM_REQUIRED positional arguments, optionally followed by
# PRE_TRAINED PRE_TRAINED_EPOCH_SIZE, with --key=value overrides anywhere. Sets POSITIONAL (the
# required ones) and OVERRIDES (the pre-trained pair as --pre_trained=ABS_PATH
# --pre_trained_epoch_size=N first, then the user's overrides, which therefore win).
parse_train_args() {
  local required="$1" usage="$2" arg
  shift 2
  POSITIONAL=(); OVERRIDES=()
  for arg in "$@"; do
    if [[ "$arg" == --* ]]; then OVERRIDES+=("$arg"); else POSITIONAL+=("$arg"); fi
  done
  local count=${#POSITIONAL[@]}
  need_args "$required" $((required + 2)) "$count" "$usage"
  [ "$count" -ne $((required + 1)) ] || die "PRE_TRAINED needs PRE_TRAINED_EPOCH_SIZE too"
  if [ "$count" -eq $((required + 2)) ]; then
    local ckpt="${POSITIONAL[$required]}" epochs="${POSITIONAL[$((required + 1))]}"
    need_file "$ckpt" PRE_TRAINED
    need_int "$epochs" PRE_TRAINED_EPOCH_SIZE
    OVERRIDES=(--pre_trained="$(abspath "$ckpt")" --pre_trained_epoch_size="$epochs"
               ${OVERRIDES[@]+"${OVERRIDES[@]}"})
    POSITIONAL=("${POSITIONAL[@]:0:$required}")
  fi
}

# launch_msrun TARGET N MINDRECORD_DIR LOG_DIR overrides...
# N train.py processes on this machine under msrun. Worker output streams to the terminal; msrun's
# own messages go to LOG_DIR/msrun.log. On failure the processes' own error lines are printed,
# the workers' (the cause) last.
launch_msrun() {
  local target="$1" n="$2" data="$3" logs="$4"; shift 4
  source "$COMMON_DIR/setup_env.sh"   # msrun starts the first python on PATH: the venv's
  command -v msrun >/dev/null || die "msrun not found in the venv (MindSpore >= 2.3 installs it)"
  mkdir -p "$logs"
  rm -f "$logs"/worker_*.log "$logs"/scheduler.log   # no stale errors from an earlier run
  local port; port="$(free_port)"
  echo "msrun: $n workers on $target, master port $port; logs in $logs"
  if ! msrun --worker_num="$n" --local_worker_num="$n" --master_port="$port" --log_dir="$logs" \
      --join=True "$REPO_ROOT/train.py" --distribute=True --device_target="$target" \
      --mindrecord_dir="$(abspath "$data")" "$@" 2> "$logs/msrun.log"; then
    echo "$(basename "$0"): error: distributed training failed; logs in $logs (msrun: msrun.log)" >&2
    report_process_errors "$logs"
    exit 1
  fi
  echo "done; see $logs/worker_0.log"
}

# report_process_errors LOG_DIR: each process's last "error: ..." (or traceback) from its log,
# the scheduler first (it only reports that a worker stopped), the workers last.
report_process_errors() {
  local logs="$1" log block
  for log in "$logs"/scheduler.log "$logs"/worker_*.log; do
    [ -f "$log" ] || continue
    # from the last line starting "error: " or "Traceback" to the end, MindSpore's log lines left out
    block="$(grep -v '^\[\(INFO\|WARNING\|ERROR\)\]' "$log" | sed -n '/^error: \|^Traceback/h;//!H;${x;p}' \
             | grep -v '^$' || true)"
    case "$block" in
      error:*|Traceback*) printf '%s: %s\n' "$(basename "$log" .log)" "$(tail -n 8 <<< "$block")" >&2 ;;
    esac
  done
}
