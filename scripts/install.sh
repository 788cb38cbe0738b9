#!/usr/bin/env bash
# Install tilelang and what its tests need into the current Python environment, at the exact
# versions of scripts/constraints.txt (so the suite gives the same result on any x86-64 machine).
# On a machine without torch, install the CPU build first: an unpinned torch would pull
# several GB of CUDA packages that a CPU-only machine cannot use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q -c scripts/constraints.txt torch
fi
"$PY" -m pip install -q -c scripts/constraints.txt -e ".[test]"
