#!/usr/bin/env bash
# The README's test command: install, then run the whole suite (GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python3 -m pytest -q -n 2 --durations=15
