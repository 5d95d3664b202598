#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the given modules against their fast tests; see docs/mutation.md.
#   bash scripts/run_mutation.sh nasfpn/ops/boxes.py nasfpn/ops/loss.py nasfpn/model
# Per module: a score line (killed / total / survived / equivalent) and the survivors with their
# diffs in .mutation/<module>.survivors.txt. Working copies live in .mutation/ (git-ignored).
# MUTATION_JOBS sets the number of mutants run at once (default 2); runs are niced.
# MUTATION_TIME_LIMIT=SECONDS stops each module's run there and scores the mutants that ran.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
cd "$REPO_ROOT"
if [ "$#" -eq 0 ]; then
  echo "usage: bash scripts/run_mutation.sh MODULE... (e.g. nasfpn/ops/boxes.py nasfpn/model)" >&2
  exit 2
fi
DEV_STAMP="$VENV/.requirements-dev.sha256"
DEV_WANT="$(sha256sum requirements-dev.txt | cut -d' ' -f1)"
if [ ! -f "$DEV_STAMP" ] || [ "$(cat "$DEV_STAMP")" != "$DEV_WANT" ] || ! python -c "import mutmut" 2>/dev/null; then
  echo "[mutation] installing requirements-dev.txt into .venv"
  python -m pip install -q -r requirements-dev.txt
  echo "$DEV_WANT" > "$DEV_STAMP"
fi
JOBS="${MUTATION_JOBS:-2}"
# The mutated copy must be the only nasfpn/ on the path: drop the repository from PYTHONPATH.
unset PYTHONPATH
status=0
for module in "$@"; do
  work_dir="$(python scripts/mutation.py prepare "$module")" || { status=2; continue; }
  echo "[mutation] $module: mutmut in $work_dir ($JOBS at a time)"
  log="$work_dir.log"
  rc=0
  # MUTATION_TIME_LIMIT (seconds): interrupt mutmut (as Ctrl-C would) and score what ran.
  (cd "$work_dir" && timeout -s INT "${MUTATION_TIME_LIMIT:-0}" nice -n 10 \
     python "$REPO_ROOT/scripts/mutmut_run.py" run --max-children "$JOBS") > "$log" 2>&1 || rc=$?
  if [ "$rc" -eq 124 ]; then
    echo "[mutation] $module: stopped after MUTATION_TIME_LIMIT=${MUTATION_TIME_LIMIT}s"
  elif [ "$rc" -ne 0 ]; then
    echo "error: mutmut failed on $module; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    status=1
    continue
  fi
  python scripts/mutation.py report "$module" || status=1
done
exit "$status"
