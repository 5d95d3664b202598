#!/usr/bin/env bash
# Draw training images as the network sees them (after crop, flip, colour jitter) with their boxes.
#   bash scripts/run_browse.sh [--mindrecord_dir=DIR | --browse_from=coco --coco_root=DIR] [--key=value ...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
for a in "$@"; do [[ "$a" == --*=* ]] || die "unexpected argument '$a' (options are --key=value)"; done
source "$HERE/setup_env.sh"
python -m nasfpn.data.browse "$@"
