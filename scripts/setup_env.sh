#!/usr/bin/env bash
# Create (or reuse) .venv at the repo root and install requirements.txt into it.
# Sourced by the other scripts; re-installs only when requirements.txt changed.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
if ! command -v "$PYTHON_BIN" >/dev/null 2>&1; then
  echo "error: $PYTHON_BIN not found; install Python 3.9-3.12 (MindSpore 2.8.0 has no wheel for 3.13)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing requirements.txt into .venv (MindSpore is a ~770 MB download)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -r "$REPO_ROOT/requirements.txt"
  echo "$WANT" > "$STAMP"
fi
# install_optional REQUIREMENTS_FILE: an optional dependency (requirements-openvino.txt), installed
# by the scripts that use it and re-installed only when that file changed (its own stamp). Without
# network the run goes on and the parts that need the package say so (tests skip, errors name it).
install_optional() {
  local file="$REPO_ROOT/$1" stamp="$VENV/.$1.sha256" want
  want="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing $1 into .venv"
    if "$VENV/bin/python" -m pip install -q -r "$file"; then
      echo "$want" > "$stamp"
    else
      echo "[setup] warning: could not install $1; what needs it is skipped or refused" >&2
    fi
  fi
}
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# MindSpore's C++ log: errors only, so our own output stays readable.
export GLOG_v="${GLOG_v:-3}"
export GLOG_logtostderr=1
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"
