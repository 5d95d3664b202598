#!/usr/bin/env bash
# Run every benchmark; each one replaces its own section of bench/RESULTS.md (date, machine, command).
#   bash bench/run_all.sh [--quick]     --quick: fewer repeats, skips the 640x640 training step
# The demo's figures come from `python bench/bench_demo.py` (it runs the demo, ~8 min), not from here.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/setup_env.sh"
install_optional requirements-openvino.txt  # bench_deploy.py's OpenVINO paths
cd "$REPO_ROOT"
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
FAILED=()
run() {  # run NAME CMD...: a failed benchmark leaves its section as it was; the others still run
  local name="$1"; shift
  echo "[bench] $name: $*"
  "$@" || { echo "[bench] $name failed (see above); continuing"; FAILED+=("$name"); }
}
REPEAT=5; [ $QUICK = 1 ] && REPEAT=2
run "3x3 convolution" python bench/bench_conv.py
run "Inference runtimes" python bench/bench_inference.py --repeat=$REPEAT
run "Data pipeline" python bench/bench_data.py
run "Post-processing" python bench/bench_postprocess.py
run "Ascend 310 twin end to end" python bench/bench_runtimes.py
run "Deployment paths (with the demo's mAP when outputs/demo exists)" \
  python bench/bench_deploy.py --demo_dir=outputs/demo
run "INT8 schemes" python bench/bench_int8_schemes.py
if [ $QUICK = 0 ]; then
  run "Training step" python bench/bench_train.py
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "[bench] failed: ${FAILED[*]} (their sections of bench/RESULTS.md are unchanged)" >&2
  exit 1
fi
echo "[bench] bench/RESULTS.md updated"
