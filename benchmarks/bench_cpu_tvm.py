"""CPU timings of the TVM backend (llvm) against numpy and torch, in one process.

    python benchmarks/bench_cpu_tvm.py [--dtype f16|bf16] [--repeat 50] [--threads 1] [--gemv-rows 1,4,16]

RMSNorm and GEMV from kernels/*.tile at modest LLM sizes; GEMV with each of `--gemv-rows`
rows of X (decode batches) at 4096 x 4096 and 11008 x 4096 weights, and 4 x 2048 @ 2048^2.  "tvm" goes through the
kernel object (argument binding included), "tvm fn" calls the built function on
arguments converted once, i.e. the kernel alone.  numpy computes in f32 (it has no
fast f16 arithmetic): its GEMV multiplies by f32 weights converted beforehand, the
best case for it.  Times are the best of `--repeat` runs after a warm-up (shared
machines disturb medians); ratios are the baseline's time over "tvm fn" (above 1:
TVM is faster).  Every library gets `--threads` threads (default 1: on a shared,
loaded machine, multithreaded timings measure the scheduler more than the code);
the issue's targets compare with torch on both cores of the CI-class machine: `--threads 2`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _threads_from_argv() -> str:
    """Thread pools read their size when they start, so it is set before numpy, torch or TVM load."""
    for i, a in enumerate(sys.argv):
        if a.startswith("--threads"):
            return a.split("=", 1)[1] if "=" in a else sys.argv[i + 1]
    return "1"


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import tilelang  # noqa: E402
from tilelang.backends.tvm.build import build, call_args  # noqa: E402
from tilelang.backends.tvm.signature import signature  # noqa: E402
from tilelang.runtime.args import bind  # noqa: E402

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
NP = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}
TORCH = {"f16": torch.float16, "bf16": torch.bfloat16}


def best_us(fn, repeat: int) -> float:
    """The fastest of `repeat` runs after two warm-ups: the least disturbed by other processes."""
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e6


def to_torch(a: np.ndarray) -> torch.Tensor:
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def tvm_fn(kernel, args, consts):
    """The compiled function and its converted arguments: the kernel without the Python front."""
    call = bind(kernel.ir, tuple(args), consts)
    tk = kernel.lower(**call.consts)
    f = build(tk, "llvm")[f"tilelang_{tk.kernel.name}"]
    converted = call_args(signature(tk), call)
    return lambda: f(*converted)


def bench_rmsnorm(m: int, h: int, dt: str, repeat: int, rng) -> list[tuple]:
    k = tilelang.load(KERNELS / "rmsnorm.tile")["rmsnorm"]
    x = rng.standard_normal((m, h)).astype(NP[dt])
    w = rng.standard_normal(h).astype(NP[dt])
    y = np.empty_like(x)
    eps = 1e-5
    tx, tw, ty = to_torch(x), to_torch(w), to_torch(y)

    def np_rms():
        x32 = x.astype(np.float32)
        r = 1.0 / np.sqrt((x32 * x32).mean(axis=1, keepdims=True) + eps)
        y[...] = (x32 * r * w.astype(np.float32)).astype(NP[dt])

    def torch_rms():
        ty.copy_(torch.nn.functional.rms_norm(tx.float(), (h,), tw.float(), eps).to(TORCH[dt]))

    k(x, w, y, eps, backend="tvm")
    got = y.astype(np.float32)
    np_rms()
    assert np.allclose(got, y.astype(np.float32), rtol=2e-2, atol=2e-2), "TVM rmsnorm disagrees with numpy"
    return [("rmsnorm", f"{m}x{h}", {
        "tvm": best_us(lambda: k(x, w, y, eps, backend="tvm"), repeat),
        "tvm fn": best_us(tvm_fn(k, [x, w, y, eps], {}), repeat),
        "numpy": best_us(np_rms, repeat),
        "torch": best_us(torch_rms, repeat),
    })]


def bench_gemv(m: int, n: int, kk: int, dt: str, repeat: int, rng) -> list[tuple]:
    k = tilelang.load(KERNELS / "gemv.tile")["gemv"]
    x = rng.standard_normal((m, kk)).astype(NP[dt])
    w = (rng.standard_normal((n, kk)) * 0.05).astype(NP[dt])
    y = np.empty((m, n), NP[dt])
    w32 = w.astype(np.float32)
    tx, tw, ty = to_torch(x), to_torch(w), to_torch(y)
    tw32 = tw.float()

    def np_gemv():
        y[...] = (x.astype(np.float32) @ w32.T).astype(NP[dt])

    k(x, w, y, backend="tvm")
    got = y.astype(np.float32)
    np_gemv()
    assert np.allclose(got, y.astype(np.float32), rtol=2e-2, atol=2e-2), "TVM gemv disagrees with numpy"
    return [("gemv", f"{m}x{kk} @ {n}x{kk}^T", {
        "tvm": best_us(lambda: k(x, w, y, backend="tvm"), repeat),
        "tvm fn": best_us(tvm_fn(k, [x, w, y], {}), repeat),
        "numpy": best_us(np_gemv, repeat),
        "torch": best_us(lambda: torch.matmul(tx, tw.T, out=ty), repeat),
        "torch f32 W": best_us(lambda: ty.copy_(tx.float() @ tw32.T), repeat),
    })]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=sorted(NP), default="f16")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="threads of every library (read before they load)")
    ap.add_argument("--gemv-rows", default="1,4,16", help="rows of X (M) of the GEMVs, comma-separated")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    rows = []
    for m, h in [(1, 4096), (16, 4096), (64, 2048)]:
        rows += bench_rmsnorm(m, h, a.dtype, a.repeat, rng)
    ms = [int(m) for m in a.gemv_rows.split(",")]
    for m, n, kk in [(m, n, 4096) for n in (4096, 11008) for m in ms] + [(4, 2048, 2048)]:
        rows += bench_gemv(m, n, kk, a.dtype, a.repeat, rng)
    print(f"# {a.dtype}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, load {os.getloadavg()[0]:.1f}; best us of {a.repeat} runs; ratio = baseline / tvm fn "
          f"(setup and builds {time.perf_counter() - t0:.1f}s)")
    print(f"{'kernel':8} {'shape':22} {'tvm':>9} {'tvm fn':>9} {'numpy':>9} {'torch':>9} {'torch f32 W':>11}"
          f" {'numpy/tvm':>9} {'torch/tvm':>9}")
    for name, shape, t in rows:
        base = t["tvm fn"]
        print(f"{name:8} {shape:22} {t['tvm']:9.1f} {base:9.1f} {t['numpy']:9.1f} {t['torch']:9.1f} "
              f"{t.get('torch f32 W', float('nan')):11.1f} {t['numpy'] / base:9.2f} {t['torch'] / base:9.2f}")


if __name__ == "__main__":
    main()
