#!/usr/bin/env bash
# Another revision's source tree with its own prebuilt TVM CUDA libraries, in .before/ (ignored by git), so that
# `bash scripts/gpu_check.sh tvm-compare` times that revision's TVM kernels against this checkout's in one run.
# A library's name hashes its TIR, so each side needs its own code to find its libraries: both travel.
# Usage: bash scripts/tvm_aot_prebuild_at.sh REV [tvm_aot_prebuild.py args, e.g. --only gemv,rmsnorm]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/tvm_aot_prebuild_at.sh REV [prebuild args]}
rm -rf .before && mkdir .before
git archive "$rev" | tar -x -C .before
(cd .before && PYTHONPATH="$PWD" TILELANG_CACHE_DIR="$PWD/.cache" python3 scripts/tvm_aot_prebuild.py "${@:2}")
echo "$rev" > .before/REVISION
