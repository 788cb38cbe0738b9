# Sourced by the GPU scripts (gpu_check.sh, gpu_models.sh) from the repo root: $OUT for logs, wheels the
# machine lacks (lark, hypothesis, ...) from .whl/, this checkout on PYTHONPATH, and TVM's runtime-only
# kit (scripts/tvm_runtime_kit.sh) and prebuilt CUDA libraries (scripts/tvm_aot_prebuild.py) when carried,
# one autotuning cache for every script, and the GPU named at the top of each log.
OUT=${OUT:-/tmp/tilelang-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
if ls .tvmrt/tvm-runtime-*-cp312.tar.gz >/dev/null 2>&1; then
    mkdir -p /tmp/tvmrt && tar -C /tmp/tvmrt -xzf .tvmrt/tvm-runtime-*-cp312.tar.gz
    export PYTHONPATH=/tmp/tvmrt:$PYTHONPATH TVM_USE_RUNTIME_LIB=1
fi
[ -d .tvmaot ] && export TILELANG_TVM_AOT=$PWD/.tvmaot
export TILELANG_CACHE_DIR=${TILELANG_CACHE_DIR:-/tmp/tilelang-cache}  # autotuning results carry over between calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader  # every table is named by the GPU that made it
