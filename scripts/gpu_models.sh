#!/usr/bin/env bash
# On the GPU machine: the models' GPU tests and `tilelang bench-model` at GPT-2-medium and Llama-1B shapes
# (random weights: no network there) against the three transformers peers, and the ablation; markdown
# tables last.  Each stage fits one 10-minute device call; run them in order on one warm machine so the
# autotuning cache ($TILELANG_CACHE_DIR) carries over.  Full logs and JSON go to $OUT.
# Usage: bash scripts/gpu_models.sh tests|gpt2|llama|llama-w4|ablate|all
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh  # $OUT, wheels, PYTHONPATH, TVM's runtime kit
what=${1:-all}
rc=0
stage() { [ "$what" = "$1" ] || [ "$what" = all ]; }
if stage tests; then
    # the new kernels on the GPU (Triton and CUDA against the interpreter), then the models against transformers
    python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_models_gpu.py \
        "tests/test_backend_triton.py" "tests/test_backend_cuda.py" \
        -k "models_gpu or lens or qkv or positions or add_bias or add_layernorm or bias_residual or rotary_qk" \
        2>&1 | tee "$OUT/models_gpu_tests.log" | tail -25
    rc=${PIPESTATUS[0]}
fi
if stage gpt2; then
    python3 -m tilelang.cli bench-model --model gpt2-medium --json "$OUT/bench_gpt2_medium.json" \
        2>"$OUT/bench_gpt2_medium.err" | tee "$OUT/bench_gpt2_medium.md" || rc=1
fi
if stage llama; then
    python3 -m tilelang.cli bench-model --model llama-1b --json "$OUT/bench_llama_1b.json" \
        2>"$OUT/bench_llama_1b.err" | tee "$OUT/bench_llama_1b.md" || rc=1
fi
if stage llama-w4; then  # fp16 and W4A16 in one run (the ratio), without the peers
    python3 -m tilelang.cli bench-model --model llama-1b --quant w4g128 --peers none \
        --json "$OUT/bench_llama_1b_w4.json" 2>"$OUT/bench_llama_1b_w4.err" | tee "$OUT/bench_llama_1b_w4.md" || rc=1
fi
if stage ablate; then
    python3 -m tilelang.cli bench-model --ablate --repeats 2 --json "$OUT/ablation.json" \
        2>"$OUT/ablation.err" | tee "$OUT/ablation.md" || rc=1
fi
for f in "$OUT"/*.err; do [ -s "$f" ] && { echo "--- last lines of $f"; tail -5 "$f"; }; done
exit $rc
