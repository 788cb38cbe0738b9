#!/usr/bin/env bash
# On the GPU machine: run the GPU test marker and the benchmarks in one go, short table last.
# Wheels the machine lacks (lark, hypothesis, ...) travel in .whl/ (see CONTRIBUTING notes in BENCHMARKS.md).
# Usage: bash scripts/gpu_check.sh [tests|bench|all] [extra pytest/bench args]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tilelang-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
what=${1:-all}; shift || true
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rc=0
if [ "$what" = tests ] || [ "$what" = all ]; then
    python3 -m pytest -q -m gpu -p no:cacheprovider "$@" tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
    rc=${PIPESTATUS[0]}
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    python3 benchmarks/bench_gpu.py --out "$OUT/BENCH.md" "$@" 2>&1 | tee "$OUT/bench.log" | grep -v "^|" | tail -20
    echo; cat "$OUT/BENCH.md"
fi
exit $rc
