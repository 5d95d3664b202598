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

# Logs of the run_*.sh scripts are per run: NAME_<YYYYmmdd-HHMMSS>.log (a folder run_<stamp>/ for
# msrun's several logs), never an earlier run's file; NAME.log (or latest/) links to the newest.
run_stamp() { date +%Y%m%d-%H%M%S; }

# unused_name BASE SUFFIX: BASE SUFFIX, or BASE_2 SUFFIX, BASE_3 ... whichever does not exist yet.
unused_name() {
  local base="$1" suffix="$2" n=1 path="$1$2"
  while [ -e "$path" ] || [ -L "$path" ]; do n=$((n + 1)); path="${base}_$n$suffix"; done
  echo "$path"
}

# keep_plain_log PATH: a log file (not a link) at PATH, from a version that wrote one file for
# every run, gets a dated name of its own, so the link put there next does not replace it.
keep_plain_log() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 0
  mv -n "$1" "$(unused_name "${1%.log}_$(date -r "$1" +%Y%m%d-%H%M%S)" .log)"
}

# new_run_log DIR NAME [COMMAND...]: create DIR/NAME_<stamp>.log for this run, starting with a
# header line (time and command), point DIR/NAME.log at it, and print its path.
new_run_log() {
  local dir="$1" name="$2" path; shift 2
  mkdir -p "$dir"
  keep_plain_log "$dir/$name.log"
  path="$(unused_name "$dir/${name}_$(run_stamp)" .log)"
  echo "# $(date '+%Y-%m-%d %H:%M:%S') $*" > "$path"
  ln -sfn "$(basename "$path")" "$dir/$name.log"
  echo "$path"
}

# new_run_dir DIR: create DIR/run_<stamp>/ for this run's logs, point DIR/latest at it, print it.
new_run_dir() {
  local path
  mkdir -p "$1"
  path="$(unused_name "$1/run_$(run_stamp)" "")"
  mkdir "$path"
  ln -sfn "$(basename "$path")" "$1/latest"
  echo "$path"
}

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

# take_node_options: move the launcher's own options out of OVERRIDES (train.py does not take them)
# into NODE_NUM (machines), NODE_RANK (this one, 0..NODE_NUM-1), MASTER_ADDR, MASTER_PORT (node 0's
# address and port, the same on every node) and CLUSTER_TIMEOUT (seconds a node waits for the
# others, msrun's --cluster_time_out). Defaults: one node; with several, master port 8118.
take_node_options() {
  NODE_NUM=1; NODE_RANK=0; MASTER_ADDR=127.0.0.1; MASTER_PORT=""; CLUSTER_TIMEOUT=600
  local kept=() arg
  for arg in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
    case "$arg" in
      --node_num=*) NODE_NUM="${arg#*=}" ;;
      --node_rank=*) NODE_RANK="${arg#*=}" ;;
      --master_addr=*) MASTER_ADDR="${arg#*=}" ;;
      --master_port=*) MASTER_PORT="${arg#*=}" ;;
      --cluster_timeout=*) CLUSTER_TIMEOUT="${arg#*=}" ;;
      *) kept+=("$arg") ;;
    esac
  done
  OVERRIDES=(${kept[@]+"${kept[@]}"})
  need_int "$NODE_NUM" --node_num; [ "$NODE_NUM" -ge 1 ] || die "--node_num must be >= 1"
  need_int "$NODE_RANK" --node_rank
  [ "$NODE_RANK" -lt "$NODE_NUM" ] || die "--node_rank must be in 0..$((NODE_NUM - 1)) (--node_num=$NODE_NUM), got $NODE_RANK"
  need_int "$CLUSTER_TIMEOUT" --cluster_timeout; [ "$CLUSTER_TIMEOUT" -ge 1 ] || die "--cluster_timeout must be >= 1"
  [ -n "$MASTER_ADDR" ] || die "--master_addr is empty"
  if [ -n "$MASTER_PORT" ]; then
    need_int "$MASTER_PORT" --master_port
    [ "$MASTER_PORT" -ge 1 ] && [ "$MASTER_PORT" -le 65535 ] || die "--master_port must be in 1..65535, got $MASTER_PORT"
  elif [ "$NODE_NUM" -gt 1 ]; then
    MASTER_PORT=8118   # every node must name the same port: a fixed default, not a free one
  fi
}

# wait_for_master ADDR PORT TIMEOUT: return once ADDR:PORT accepts a TCP connection (node 0's msrun
# scheduler), retrying until TIMEOUT seconds; then fail with what to check instead of hanging.
wait_for_master() {
  python - "$1" "$2" "$3" <<'PY' || die "node $NODE_RANK cannot reach the master $1:$2 within $3 s: start node 0 first (its launch starts the master), and check --master_addr/--master_port and that the port is open between the machines"
import socket, sys, time
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        socket.create_connection((addr, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() >= deadline:
            sys.exit(1)
        time.sleep(0.5)
PY
}

# launch_msrun TARGET N MINDRECORD_DIR LOG_DIR overrides...
# N train.py processes on this machine under msrun, as node NODE_RANK of NODE_NUM (take_node_options;
# NODE_NUM x N processes in all). The logs of this run go to a new LOG_DIR/run_<stamp>/ (LOG_DIR/latest
# links to it): worker_<rank>.log, scheduler.log, and msrun's own messages in msrun.log. Worker
# output also streams to the terminal, each line of ours tagged with its rank. On failure the processes' own error lines are printed, the workers' (the cause)
# last. Node 0 runs the master (msrun's scheduler); the other nodes first wait for it to answer.
launch_msrun() {
  local target="$1" n="$2" data="$3" logs="$4"; shift 4
  source "$COMMON_DIR/setup_env.sh"   # msrun starts the first python on PATH: the venv's
  command -v msrun >/dev/null || die "msrun not found in the venv (MindSpore >= 2.3 installs it)"
  [ "$n" -ge 1 ] || die "DEVICE_NUM must be >= 1"
  logs="$(new_run_dir "$logs")"   # a fresh folder: no earlier run's log is replaced or read
  local port="${MASTER_PORT:-$(free_port)}" total=$((n * NODE_NUM))
  if [ "$NODE_NUM" -gt 1 ]; then
    echo "msrun: node $NODE_RANK of $NODE_NUM, $n of $total workers on $target, master $MASTER_ADDR:$port; logs in $logs"
    [ "$NODE_RANK" -eq 0 ] || wait_for_master "$MASTER_ADDR" "$port" "$CLUSTER_TIMEOUT"
  else
    echo "msrun: $n workers on $target, master port $port; logs in $logs"
  fi
  if ! msrun --worker_num="$total" --local_worker_num="$n" --node_rank="$NODE_RANK" \
      --master_addr="$MASTER_ADDR" --master_port="$port" --cluster_time_out="$CLUSTER_TIMEOUT" \
      --log_dir="$logs" --join=True "$REPO_ROOT/train.py" --distribute=True --device_target="$target" \
      --mindrecord_dir="$(abspath "$data")" "$@" 2> "$logs/msrun.log"; then
    echo "$(basename "$0"): error: distributed training failed; logs in $logs (msrun: msrun.log)" >&2
    report_process_errors "$logs"
    exit 1
  fi
  echo "done; see $logs/worker_*.log"
}

# log_dir_for KIND N: outputs/train_<KIND>_<N>, or .../train_<KIND>_<N>_node<rank> on several nodes
# (so two nodes that share a file system keep their logs apart); each run makes run_<stamp>/ in it.
log_dir_for() {
  local dir; dir="$(cd "$COMMON_DIR/.." && pwd)/outputs/train_$1_$2"
  [ "$NODE_NUM" -gt 1 ] && dir="${dir}_node${NODE_RANK}"
  echo "$dir"
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
