#!/usr/bin/env bash
# Run every benchmark and collect their markdown tables into bench/RESULTS.md (with the machine).
#   bash bench/run_all.sh [--quick]     --quick: fewer repeats, skips the 640x640 training step
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/setup_env.sh"
cd "$REPO_ROOT"
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
OUT="bench/RESULTS.md"
TMP="$(mktemp "bench/.results.XXXXXX")"
trap 'rm -f "$TMP"' EXIT
{
  echo "# Benchmarks"
  echo
  echo "Measured $(date -u +%Y-%m-%d) by \`bash bench/run_all.sh$([ $QUICK = 1 ] && echo ' --quick')\`."
} > "$TMP"
run() {  # run NAME CMD...: append the command's output (its markdown table) to the results
  local name="$1"; shift
  echo "[bench] $name: $*"
  if [ "$1" = python ] && [ ! -f "$2" ]; then
    echo "[bench] $2 not found, skipped"; return
  fi
  { echo; echo "## $name"; echo; "$@" 2>/dev/null | sed -n '/^$/,$p'; } >> "$TMP" \
    || echo "[bench] $name failed (see above); continuing"
}
REPEAT=5; [ $QUICK = 1 ] && REPEAT=2
run "3x3 convolution (MindSpore version check)" python bench/bench_conv.py
run "Inference runtimes, 640x640" python bench/bench_inference.py --repeat=$REPEAT
run "Data pipeline" python bench/bench_data.py
run "Post-processing" python bench/bench_postprocess.py
run "Runtimes end to end (Ascend 310 twin)" python bench/bench_runtimes.py
run "Deployment paths: cell, MINDIR, ONNX, INT8 (with the demo's mAP when outputs/demo exists)" \
  python bench/bench_deploy.py --demo_dir=outputs/demo
run "INT8 schemes" python bench/bench_int8_schemes.py
if [ $QUICK = 0 ]; then
  run "Training step, 640x640, batch 2" python bench/bench_train.py
fi
mv "$TMP" "$OUT"
trap - EXIT
echo "[bench] wrote $OUT"
