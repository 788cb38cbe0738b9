#!/usr/bin/env bash
# On the GPU machine: the language features of issue 14 part A (scalars read from tensors, windows at element
# offsets, if/else) and the kernels built on them (embedding, scatter_rows, kv_append, kv_append_slots, the
# paged decode attention of kernels/attention_paged.tile) on Triton and CUDA, f16 and bf16, odd shapes: the GPU
# tests against numpy / the interpreter, the models' GPU tests (they now gather and write the cache with these
# kernels, inside CUDA graphs), then a table of the kernels against the torch ops they replace
# (benchmarks/bench_lang.py) and of paged decode attention against the contiguous split decode
# (benchmarks/bench_paged.py). Logs go to $OUT.
# Usage: bash scripts/gpu_lang.sh [tests|bench|all]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh  # $OUT, wheels, PYTHONPATH, TVM's runtime kit
what=${1:-all}
rc=0
if [ "$what" = tests ] || [ "$what" = all ]; then
    python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_lang_scalars.py tests/test_backend_triton.py \
        tests/test_kernel_attention_paged.py \
        tests/test_backend_cuda.py tests/test_models_gpu.py -k "lang_scalars or embedding or scatter_rows or kv_append or paged or models_gpu" \
        2>&1 | tee "$OUT/lang_gpu_tests.log" | tail -25
    rc=${PIPESTATUS[0]}
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    python3 benchmarks/bench_lang.py 2>"$OUT/bench_lang.log" | tee "$OUT/bench_lang.md" || rc=1
    python3 benchmarks/bench_paged.py 2>"$OUT/bench_paged.log" | tee "$OUT/bench_paged.md" || rc=1
fi
exit $rc
