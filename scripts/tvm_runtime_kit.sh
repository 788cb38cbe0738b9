#!/usr/bin/env bash
# Pack TVM's runtime without its compiler (~7 MB) into .tvmrt/, for a machine that has no TVM.
# The full wheel is ~100 MB, its compiler library alone 259 MB: over what a device run can carry.
# There, `bash scripts/gpu_check.sh` unpacks the kit and runs libraries from scripts/tvm_aot_prebuild.py.
# Usage: bash scripts/tvm_runtime_kit.sh [python version, default 3.12 (the GPU image's)]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
tag=cp${py/./}
tvm_version=$(python3 -c "from importlib.metadata import version; print(version('apache-tvm'))")
ffi_version=$(python3 -c "from importlib.metadata import version; print(version('apache-tvm-ffi'))")
wheels=${TVM_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/tilelang/tvm-wheels}
mkdir -p "$wheels" .tvmrt
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$wheels" "apache-tvm==$tvm_version" "apache-tvm-ffi==$ffi_version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for w in "$wheels"/apache_tvm-"$tvm_version"-*.whl "$wheels"/apache_tvm_ffi-"$ffi_version"-"$tag"-*.whl; do
    python3 -m zipfile -e "$w" "$work/site"
done
# the compiler and everything only the compiler reads (headers, sources, bundled third-party code)
rm -rf "$work"/site/tvm/lib/libtvm_compiler.so "$work"/site/tvm/{3rdparty,src,include,web} \
    "$work"/site/tvm_ffi/3rdparty
kit=.tvmrt/tvm-runtime-$tvm_version-$tag.tar.gz
rm -f .tvmrt/tvm-runtime-*.tar.gz
tar -C "$work/site" -czf "$kit" .
echo "$kit: $(du -h "$kit" | cut -f1) (TVM $tvm_version runtime, tvm-ffi $ffi_version, $tag)"
