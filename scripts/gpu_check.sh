#!/usr/bin/env bash
# On the GPU machine: run the GPU test marker and the benchmarks in one go, short table last.
# Wheels the machine lacks (lark, hypothesis, ...) travel in .whl/ (see CONTRIBUTING notes in BENCHMARKS.md).
# Usage: bash scripts/gpu_check.sh [tests|bench|all|sanitize|dispatch|tvm-compare] [extra pytest/bench/driver args]
# dispatch: the fast-dispatch GPU tests, then host time per eager call (benchmarks/bench_dispatch.py).
# tvm-compare: `tilelang bench --backends tvm` twice in one go: another revision's code and prebuilt libraries
# (.before/, from scripts/tvm_aot_prebuild_at.sh REV) and this checkout's (.tvmaot); both tables last.
# sanitize: every library kernel once through the CUDA backend (tests/cuda_sanitize_driver.py, tiny odd
# shapes) under compute-sanitizer memcheck, racecheck and synccheck; one verdict line per tool.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu_env.sh  # $OUT, wheels, PYTHONPATH, TVM's runtime kit
what=${1:-all}; shift || true
rc=0
if [ "$what" = tests ] || [ "$what" = all ]; then
    python3 -m pytest -q -m gpu -p no:cacheprovider "$@" tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
    rc=${PIPESTATUS[0]}
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    python3 -m tilelang.cli bench --out "$OUT/BENCH.md" "$@" 2>&1 | tee "$OUT/bench.log" | grep -v "^|" | tail -20
    echo; cat "$OUT/BENCH.md"
fi
if [ "$what" = tvm-compare ]; then
    [ -d .before/.tvmaot ] && [ -d .tvmaot ] || { echo "tvm-compare needs .before/ and .tvmaot (see the usage)"; exit 2; }
    for side in before now; do
        root=$PWD; [ "$side" = before ] && root=$PWD/.before
        # each side imports its own tilelang, finds its own libraries and tunes on its own (a separate cache)
        (cd "$root" && PYTHONPATH=$root:$PYTHONPATH TILELANG_TVM_AOT=$root/.tvmaot TILELANG_CACHE_DIR=$OUT/cache-tvm-$side \
            python3 -m tilelang.cli bench --backends tvm --out "$OUT/BENCH_tvm_$side.md" "$@" 2>&1) \
            | tee "$OUT/bench_tvm_$side.log" | grep -v "^|" | tail -5
        rc=$((rc | PIPESTATUS[0]))
    done
    echo; echo "# TVM kernels of $(cat .before/REVISION) (before)"; cat "$OUT/BENCH_tvm_before.md"
    echo; echo "# TVM kernels of this checkout"; cat "$OUT/BENCH_tvm_now.md"
fi
if [ "$what" = dispatch ]; then
    python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_dispatch.py 2>&1 | tee "$OUT/dispatch_tests.log" | tail -5
    rc=${PIPESTATUS[0]}
    python3 benchmarks/bench_dispatch.py "$@" 2>&1 | tee "$OUT/dispatch.md"
fi
if [ "$what" = sanitize ]; then
    python3 tests/cuda_sanitize_driver.py "$@" >/dev/null 2>&1  # compile (CuPy caches) outside the sanitizers
    for tool in memcheck racecheck synccheck; do
        log="$OUT/sanitize_$tool.log"
        compute-sanitizer --tool "$tool" --target-processes all --error-exitcode 99 \
            python3 tests/cuda_sanitize_driver.py "$@" >"$log" 2>&1
        code=$?
        summary=$(grep -E "(ERROR|RACECHECK) SUMMARY" "$log" | tail -1 | sed 's/^========= //')
        launched=$(grep -c ": launched" "$log")
        if [ $code -eq 0 ]; then verdict=PASS; else verdict=FAIL; rc=1; fi
        echo "sanitize $tool: $verdict (exit $code; $launched kernels launched; ${summary:-no summary}; log $log)"
    done
fi
exit $rc
