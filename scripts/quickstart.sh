#!/usr/bin/env bash
# The README's main job: install, check the kernel library, and build it for Triton
# (ahead of time for sm_90 when Triton can compile here; generated sources otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
tilelang check kernels/
tilelang build kernels/ --backend triton -o build/
