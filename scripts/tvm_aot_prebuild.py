"""Prebuild the TVM CUDA libraries the GPU benchmark (and optionally the GPU tests) call, on a CPU machine.

    python scripts/tvm_aot_prebuild.py [--out .tvmaot] [--arch sm_90a] [--tests]

The GPU image has TVM's runtime only (scripts/tvm_runtime_kit.sh): there the tvm backend runs
these libraries when TILELANG_TVM_AOT=<out> is set, and a specialization missing here is an
error naming it.  The benchmark's calls are replayed on tiny CPU tensors of its dtypes through
its own kernel objects (and its MLP helpers, constants included) while the tvm backend records
each typed kernel instead of compiling: dims stay symbolic, so these are the specializations
the benchmark asks for.  `--tests` adds those of tests/test_backend_tvm.py's GPU test.
Autotuning on the GPU picks among the configurations built here (it skips missing ones), and
here the untuned defaults are built.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import bench_gpu  # noqa: E402
import tilelang.backends.tvm as tvm_backend  # noqa: E402
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


def bench_calls() -> None:
    """Every tvm call bench_gpu.py makes, on tiny CPU tensors (mirrors its bench_* functions)."""
    K, f16, bf16, be = bench_gpu.K, torch.float16, torch.bfloat16, "tvm"
    for dt in (f16, bf16):
        K["gemm"](_t(4, 8, dt=dt), _t(8, 4, dt=dt), _t(4, 4, dt=dt), backend=be)
    K["gemv"](_t(1, 8), _t(4, 8), _t(1, 4), backend=be)
    packed, scale, _ = quantize(torch.zeros(4, 256).numpy(), 4, 128, zero_point=False)
    quant = (_t(1, 256, dt=bf16), torch.from_numpy(packed), torch.from_numpy(scale).to(bf16), _t(1, 4, dt=bf16))
    K["gemv_wNa16"](*quant, backend=be, TW="u4", G=128)
    K["gemm_wNa16"](*quant, backend=be, TW="u4", G=128, BM=16)
    K["rmsnorm"](_t(2, 8), _t(8), _t(2, 8), 1e-6, backend=be)
    x, wn, wg, wu, wd, hid, y = _t(1, 8), _t(8), _t(4, 8), _t(4, 8), _t(8, 4), _t(1, 4), _t(1, 8)
    bench_gpu._mlp_decode(x, wn, wg, wu, wd, hid, y, be)
    bench_gpu._mlp_prefill(x, _t(1, 8), wn, wg, wu, wd, hid, y, be)


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
    a = ap.parse_args()
    with recording() as typed:
        bench_calls()
    if a.tests:
        typed += test_typed()
    t0 = time.perf_counter()
    paths = {p for tk in typed for p in tvm_backend.build_aot(tk, a.out, f"cuda:{a.arch}")}
    size = sum(p.stat().st_size for p in Path(a.out).glob("*.so"))
    print(f"{len(paths)} libraries for {a.arch} in {a.out} ({size / 2**20:.1f} MiB in the folder, "
          f"{time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
