#!/usr/bin/env bash
# `pip install .` into a fresh venv outside the repository, then, from another folder:
#   1. a library kernel through its torch operator, eagerly and under torch.compile(fullgraph=True), on the CPU;
#   2. `tilelang build` of the installed library (TVM, llvm), run by `tilelang.load_build` in a process that
#      has TVM's runtime alone (its compiler library is never loaded) and no nvcc on PATH.
# The venv sees this machine's packages (--system-site-packages: torch, TVM, Triton are large), but
# tilelang itself, its kernels included, comes from the wheel.  Usage: bash scripts/install_check.sh [WORKDIR]
set -euo pipefail
unset PYTHONPATH  # the installed package, not a checkout, must answer
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
PY=${PYTHON:-python3}
"$PY" -m venv --system-site-packages "$work/venv"
venv_py=$work/venv/bin/python
"$venv_py" -m pip install -q --no-deps "$repo"
mkdir -p "$work/elsewhere" && cd "$work/elsewhere"
export TILELANG_CACHE_DIR=$work/cache
"$venv_py" - <<'PY'
import torch, torch.nn.functional as F, tilelang, tilelang.ops as ops
import sys
assert "site-packages" in tilelang.__file__ and sys.prefix in tilelang.__file__, tilelang.__file__
assert tilelang.kernels.library_dir().name == "_kernels", tilelang.kernels.library_dir()
x, w = torch.randn(4, 256, dtype=torch.float16), torch.randn(256, dtype=torch.float16)
want = F.rms_norm(x.float(), (256,), w.float(), 1e-6)
for name, fn in (("eager", ops.rmsnorm), ("torch.compile", torch.compile(ops.rmsnorm, fullgraph=True))):
    err = float((fn(x, w, 1e-6).float() - want).norm() / want.norm())
    assert err < 1e-2, (name, err)
    print(f"install: tilelang.ops.rmsnorm {name} on the CPU: rel err {err:.1e}")
PY
lib=$("$venv_py" -c "import tilelang.kernels as k; print(k.library_dir())")
mkdir -p src && cp "$lib/rmsnorm.tile" src/
"$work/venv/bin/tilelang" build src --backend tvm -o kit >/dev/null
PATH=$work/venv/bin:/usr/bin:/bin TVM_USE_RUNTIME_LIB=1 "$venv_py" - <<'PY'
import sys, numpy as np, tilelang
ks = tilelang.load_build("kit")
x, w = np.random.rand(3, 300).astype(np.float16), np.random.rand(300).astype(np.float16)
y = np.zeros_like(x)
ks["rmsnorm"](x, w, y, 1e-6)
want = x.astype(np.float32) / np.sqrt((x.astype(np.float32) ** 2).mean(1, keepdims=True) + 1e-6) * w
err = float(np.linalg.norm(y - want) / np.linalg.norm(want))
assert err < 1e-2 and "libtvm_compiler" not in open("/proc/self/maps").read(), err
print(f"install: load_build of a TVM llvm build with TVM's runtime alone: rel err {err:.1e}")
PY
echo "install check: ok ($work)"
