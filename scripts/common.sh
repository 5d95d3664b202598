#!/usr/bin/env bash
# Helpers for the run_*.sh scripts: argument checks that fail early with a clear message.
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
