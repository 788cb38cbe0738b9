"""Prebuild the TVM CUDA libraries `tilelang bench` (and optionally the GPU tests) call, on a CPU machine.

    python scripts/tvm_aot_prebuild.py [--out .tvmaot] [--arch sm_90a] [--tests]

The GPU image has TVM's runtime only (scripts/tvm_runtime_kit.sh): there the tvm backend runs
these libraries when TILELANG_TVM_AOT=<out> is set, and a specialization missing here is an
error naming it.  The benchmark's calls are replayed on tiny CPU tensors of its dtypes through
its own kernel objects (and its MLP helpers, constants included) while the tvm backend records
each typed kernel instead of compiling: dims stay symbolic, so these are the specializations
the benchmark asks for.  `--tests` adds those of tests/test_backend_tvm.py's GPU test.
Autotuning on the GPU picks among the configurations built here (it skips missing ones): the
defaults, and for some kernels the few configurations of EXTRA that measured faster with TVM.
`--only gemm,gemv` builds the kernels whose name contains one of those words (quicker, for a
partial benchmark run).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import tilelang.backends.tvm as tvm_backend  # noqa: E402
from tilelang import kernels  # noqa: E402
from tilelang.bench import library  # noqa: E402
from tilelang.quant import quantize  # noqa: E402


@contextlib.contextmanager
def recording():
    """Kernel calls with backend='tvm' record their typed kernel instead of compiling or running."""
    seen, compile_ = [], tvm_backend.compile
    tvm_backend.compile = lambda tk, target=None: seen.append(tk) or (lambda call: None)
    try:
        yield seen
    finally:
        tvm_backend.compile = compile_


def _t(*shape, dt=torch.float16):
    return torch.zeros(*shape, dtype=dt)


# Beyond the defaults: larger GEMM tiles (256 threads) amortize ldmatrix traffic and barriers; the
# memory-bound decode kernels want shorter register rows (gemv_wNa16) or deeper pipelines and more blocks.
EXTRA = {
    "gemm": [dict(BM=128, BN=128, BK=32, THREADS=256, STAGES=4), dict(BM=128, BN=256, BK=32, THREADS=256, STAGES=3),
             dict(BM=128, BN=128, BK=64, THREADS=256, STAGES=3), dict(BM=128, BN=256, BK=64, THREADS=256, STAGES=3)],
    "gemv_wNa16": [dict(BN=16, BK=256), dict(BN=16, BK=128), dict(BN=32, BK=128), dict(BN=8, BK=256)],
    "gemm_wNa16": [dict(BN=16, BK=128), dict(BN=64, BK=64), dict(BN=32, BK=128, STAGES=4)],
    "fused_mlp_gate_up": [dict(BN=32, BK=128, STAGES=4), dict(BN=64, BK=128, STAGES=3), dict(BN=32, BK=64, STAGES=4)],
}


def _call(name: str, *args, **pins) -> None:
    """One recorded call per configuration: the call's own and each of EXTRA (the call's pins win)."""
    for extra in [{}] + EXTRA.get(name, []):
        kernels.load(name)(*args, **{**extra, **pins})


def bench_calls() -> None:
    """Every tvm call `tilelang bench` makes, on tiny CPU tensors (mirrors tilelang/bench/library.py)."""
    K, f16, bf16, be = kernels, torch.float16, torch.bfloat16, "tvm"
    for dt in (f16, bf16):
        _call("gemm", _t(4, 8, dt=dt), _t(8, 4, dt=dt), _t(4, 4, dt=dt), backend=be)
    K.gemv(_t(1, 8), _t(4, 8), _t(1, 4), backend=be)
    packed, scale, _ = quantize(torch.zeros(4, 256).numpy(), 4, 128, zero_point=False)
    quant = (_t(1, 256, dt=bf16), torch.from_numpy(packed), torch.from_numpy(scale).to(bf16), _t(1, 4, dt=bf16))
    _call("gemv_wNa16", *quant, backend=be, TW="u4", G=128)
    _call("gemm_wNa16", *quant, backend=be, TW="u4", G=128, BM=16)
    K.rmsnorm(_t(2, 8), _t(8), _t(2, 8), 1e-6, backend=be)
    x, wn, wg, wu, wd, hid, y = _t(1, 8), _t(8), _t(4, 8), _t(4, 8), _t(8, 4), _t(1, 4), _t(1, 8)
    library._mlp_decode(x, wn, wg, wu, wd, hid, y, be)
    _call("fused_mlp_gate_up", x, wn, wg, wu, hid, 1e-6, backend=be, BM=16)
    library._mlp_prefill(x, _t(1, 8), wn, wg, wu, wd, hid, y, be)


def test_typed() -> list:
    """Typed kernels of test_backend_tvm.py's `test_cuda_matches_reference` cases it can lower."""
    import pytest
    sys.path.insert(0, str(ROOT / "tests"))
    import test_backend_tvm as t
    out = []
    for p in t.RUNS:
        try:
            out.append(t._lowerable(*p.values))
        except pytest.xfail.Exception:  # the test expects these to fail: nothing to build
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / ".tvmaot"))
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--tests", action="store_true", help="also the GPU test's specializations")
    ap.add_argument("--only", default=None, help="comma list of words; build kernels whose name has one")
    a = ap.parse_args()
    with recording() as typed:
        bench_calls()
    if a.tests:
        typed += test_typed()
    if a.only:
        typed = [tk for tk in typed if any(w in tk.kernel.name for w in a.only.split(","))]
    t0 = time.perf_counter()
    paths = {p for tk in typed for p in tvm_backend.build_aot(tk, a.out, f"cuda:{a.arch}")}
    size = sum(p.stat().st_size for p in Path(a.out).glob("*.so"))
    print(f"{len(paths)} libraries for {a.arch} in {a.out} ({size / 2**20:.1f} MiB in the folder, "
          f"{time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
