#!/usr/bin/env bash
# Build ascend310_infer/out/main. MINDSPORE_PATH may be set; otherwise it is taken from the installed
# MindSpore Python package (mindspore, or mindspore-ascend for 1.x).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in cmake make g++; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build.sh: '$tool' not found on PATH" >&2; exit 1; }
done
if [ -z "${MINDSPORE_PATH:-}" ]; then
  PIP="$(command -v pip3 || command -v pip || true)"
  [ -n "$PIP" ] || { echo "build.sh: no pip to locate MindSpore; set MINDSPORE_PATH" >&2; exit 1; }
  for pkg in mindspore mindspore-ascend; do
    location="$("$PIP" show "$pkg" 2>/dev/null | awk '/^Location:/ {print $2}')"
    if [ -n "$location" ]; then MINDSPORE_PATH="$location/mindspore"; break; fi
  done
fi
if [ -z "${MINDSPORE_PATH:-}" ] || [ ! -f "$MINDSPORE_PATH/include/api/model.h" ]; then
  echo "build.sh: no MindSpore C++ inference API at MINDSPORE_PATH='${MINDSPORE_PATH:-}'" >&2
  echo "          (expected include/api/model.h there; install MindSpore for Ascend or set MINDSPORE_PATH)" >&2
  exit 1
fi
rm -rf "$HERE/out"
cmake -S "$HERE" -B "$HERE/out" -DMINDSPORE_PATH="$MINDSPORE_PATH"
cmake --build "$HERE/out" -- -j"$(nproc 2>/dev/null || echo 2)"
echo "build.sh: built $HERE/out/main"
