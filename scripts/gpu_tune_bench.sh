#!/usr/bin/env bash
# On the GPU machine, in one run: the GEMV tuning study (heat maps of gemv's BN x BK, the seed
# report's TILE_S x TILE_R, at GPT-2-medium and Llama decode shapes), `tilelang bench` (library vs
# torch, CUDA graphs), the prebuilt-kernel and torch-operator GPU tests, and prebuilt TVM folders
# run with TVM's runtime alone and no nvcc.  Short summary last; tables, PNGs and logs under $OUT.
# Carry: .whl (lark; see DEVICE.md), and for TVM .tvmrt (scripts/tvm_runtime_kit.sh) and .tvmbuild
# (`tilelang build kernels/ --backend tvm --target cuda:sm_90a -o .tvmbuild`, made where nvcc is).
# Usage: bash scripts/gpu_tune_bench.sh [all | a comma list of tune,bench,tests,prebuilt]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tilelang-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 TILELANG_CACHE_DIR=${TILELANG_CACHE_DIR:-/tmp/tlcache}
if ls .tvmrt/tvm-runtime-*-cp312.tar.gz >/dev/null 2>&1; then
    mkdir -p /tmp/tvmrt && tar -C /tmp/tvmrt -xzf .tvmrt/tvm-runtime-*-cp312.tar.gz
    export PYTHONPATH=/tmp/tvmrt:$PYTHONPATH TVM_USE_RUNTIME_LIB=1
fi
what=${1:-all}
wants() { [ "$what" = all ] || [[ ",$what," == *",$1,"* ]]; }
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
summary=()
if wants tune; then
    # name K N: GPT-2 medium (hidden 1024, MLP 4096) and the Llama shape (hidden 2048, MLP 8192, 8 KV heads)
    for shape in "gpt2_qkv 1024 3072" "gpt2_fc 1024 4096" "gpt2_proj 4096 1024" \
                 "llama_qkv 2048 3072" "llama_up 2048 8192" "llama_down 8192 2048"; do
        set -- $shape
        python3 -m tilelang.cli tune gemv --shape "M=1,K=$2,N=$3" --sweep BN,BK \
            --values BN=16/32/64/128 --values BK=64/128/256/512/1024 --const STAGES=4 \
            --plot "$OUT/gemv_$1.png" --out "$OUT/gemv_$1.md" >"$OUT/tune_$1.log" 2>&1
        best=$(grep "| best |" "$OUT/gemv_$1.md" | head -1)
        summary+=("tune gemv $1 (K=$2 N=$3): best ${best:-FAILED (see $OUT/tune_$1.log)}")
    done
fi
if wants bench; then
    backends=triton,cuda; [ -n "${TVM_USE_RUNTIME_LIB:-}" ] && [ -d .tvmaot ] && backends=$backends,tvm \
        && export TILELANG_TVM_AOT=$PWD/.tvmaot
    python3 -m tilelang.cli bench --backends "$backends" --out "$OUT/BENCH.md" >"$OUT/bench.log" 2>&1
    summary+=("bench ($backends): exit $? -> $OUT/BENCH.md")
fi
if wants tests; then
    python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_prebuilt.py tests/test_torch_ops.py \
        >"$OUT/gpu_tests.log" 2>&1
    summary+=("gpu tests (prebuilt cubins, torch ops under graphs/compile): $(tail -1 "$OUT/gpu_tests.log")")
fi
if wants prebuilt && [ -d .tvmbuild ]; then
    # TVM's runtime only (the kit), the fatbins the build embedded; the driver forbids compiling
    python3 scripts/gpu_load_build.py .tvmbuild >"$OUT/prebuilt.log" 2>&1
    summary+=("$(cat "$OUT/prebuilt.log" | tail -5)")
fi
[ -f "$OUT/BENCH.md" ] && cat "$OUT/BENCH.md"
for f in "$OUT"/gemv_*.md; do [ -f "$f" ] && cat "$f"; done
echo; echo "=== $gpu"
printf '%s\n' "${summary[@]}"
