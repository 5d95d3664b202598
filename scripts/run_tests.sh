#!/usr/bin/env bash
# The test suite: sets up .venv, then runs pytest. Extra arguments go to pytest (e.g. -k anchors).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
install_optional requirements-openvino.txt  # tests/test_openvino.py
install_optional requirements-lint.txt  # tests/test_lint.py: ruff (lint + format), mypy
cd "$REPO_ROOT"
# pytest.ini names tests/ as testpaths, so file arguments run only those files.
python -m pytest "$@"
