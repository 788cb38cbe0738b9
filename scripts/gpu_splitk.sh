#!/usr/bin/env bash
# On the GPU machine: split-K (kernels/splitk.tile, tilelang.splitk) checked, then timed; short table last.
# 1. the GPU tests of the split-K, argmax and atomic_add kernels: compiled Triton and CUDA against the interpreter, f16 and bf16;
# 2. benchmarks/bench_splitk.py on Triton and on CUDA: every M=1 projection of GPT-2-medium, Llama-1B/8B
#    against torch fp16 F.linear, W4A16 against _weight_int4pack_mm, and W4A16 M=16 vs M=1 on 11008x4096.
# Usage: [BACKENDS="triton cuda"] bash scripts/gpu_splitk.sh [extra bench_splitk.py args, e.g. --tune or --quick]
# (one backend per call keeps each call short: BACKENDS=triton ..., then BACKENDS=cuda ...)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh
python3 -m pytest -q -m gpu -p no:cacheprovider -k "splitk or argmax or atomic" tests 2>&1 | tee "$OUT/splitk_tests.log" | tail -5
rc=${PIPESTATUS[0]}
for backend in ${BACKENDS:-triton cuda}; do
    python3 benchmarks/bench_splitk.py --backend "$backend" --out "$OUT/SPLITK_$backend.md" "$@" \
        2>&1 | tee "$OUT/splitk_$backend.log" | grep -v "^|" | tail -4
    rc=$((rc | PIPESTATUS[0]))
done
for backend in ${BACKENDS:-triton cuda}; do echo; cat "$OUT/SPLITK_$backend.md"; done
exit $rc
