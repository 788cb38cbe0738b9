"""Host time per eager kernel call: tilelang's dispatch beside torch's, on tiny inputs.

    python benchmarks/bench_dispatch.py [--backends triton,cuda] [--calls 100] [--batches 50] [--tune]
    python benchmarks/bench_dispatch.py --cpu      # no GPU: the Python side only, with a no-op launcher

GPU mode times `calls` back-to-back calls (no synchronization inside a batch, so the GPU
queue never fills) and reports the median microseconds per call over `batches` batches,
for the kernel called through `TileKernel.__call__` with fast dispatch (the default) and
with it turned off (`TILELANG_FAST_DISPATCH=0`: bind, constants and launcher lookup on every
call), beside the torch op that does the same work.  Every column's output is checked
against torch first.  The target is <= 10 us per call on the fast path.

CPU mode runs the same calls on CPU tensors through a backend whose launch does nothing,
so it measures everything tilelang does before a launch: the signature key and lookup (fast
path), or bind + constants + lookup (full path).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tilelang  # noqa: E402
from tilelang.backends import BACKENDS  # noqa: E402

H, K, N = 4096, 4096, 4096
EPS = 1e-6


def cases(device: str) -> list[tuple[str, str, tuple, object]]:
    """(name, kernel, arguments, the torch call doing the same) for each measured call."""
    torch.manual_seed(0)
    f16 = dict(device=device, dtype=torch.float16)
    x, w, y = torch.randn(1, H, **f16), torch.randn(H, **f16), torch.empty(1, H, **f16)
    xg, wg, yg = torch.randn(1, K, **f16), torch.randn(N, K, **f16) / K ** 0.5, torch.empty(1, N, **f16)
    return [
        (f"rmsnorm M=1 H={H} f16", "rmsnorm", (x, w, y, EPS), lambda: F.rms_norm(x, (H,), w, EPS)),
        (f"gemv M=1 K={K} N={N} f16", "gemv", (xg, wg, yg), lambda: F.linear(xg, wg)),
    ]


def kernels(fast: bool) -> dict[str, tilelang.TileKernel]:
    """The library kernels, loaded with fast dispatch on or off (it is read when a kernel is created)."""
    os.environ["TILELANG_FAST_DISPATCH"] = "1" if fast else "0"
    ks = {**tilelang.load(ROOT / "kernels" / "rmsnorm.tile"), **tilelang.load(ROOT / "kernels" / "gemv.tile")}
    os.environ.pop("TILELANG_FAST_DISPATCH")
    return ks


def host_us(fn, calls: int, batches: int, sync) -> float:
    """Median host microseconds per call over `batches` batches of `calls` calls."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(batches):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    sync()
    return statistics.median(times)


def gpu(args) -> None:
    if not args.tune:
        os.environ["TILELANG_AUTOTUNE"] = "0"  # defaults: this measures dispatch, not the kernels' tiles
    backends = args.backends.split(",")
    per_backend = {be: {True: kernels(True), False: kernels(False)} for be in backends}  # one signature each
    sync = torch.cuda.synchronize
    rows = []
    for name, kernel, call_args, peer in cases("cuda"):
        row = {"case": name, "torch": host_us(peer, args.calls, args.batches, sync)}
        want = peer().float()
        for be in backends:
            ks = per_backend[be]
            for fast in (True, False):
                col = f"{be} {'fast' if fast else 'full'}"
                k = ks[fast][kernel]
                out = call_args[2]
                try:
                    out.fill_(float("nan"))
                    k(*call_args, backend=be)
                    sync()
                    err = ((out.float() - want).norm() / want.norm()).item()
                    if not err < 2e-2:
                        raise AssertionError(f"output differs from torch (rel err {err:.2e})")
                    row[col] = host_us(lambda: k(*call_args, backend=be), args.calls, args.batches, sync)
                    if fast and len(k._fast.entries) != 1:
                        raise AssertionError(f"{len(k._fast.entries)} signatures for one call")
                except Exception as e:  # one failing column must not hide the others
                    row[col] = f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"
        rows.append(row)
    import triton
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"python {sys.version.split()[0]}; {args.calls} calls x {args.batches} batches, median")
    print(table(rows, ["torch"] + [f"{be} {m}" for be in backends for m in ("fast", "full")]))


def cpu(args) -> None:
    """Python-side cost before the launch, with CPU tensors and a backend whose launches do nothing."""
    null = types.ModuleType("tilelang_null_backend")

    class Launcher:
        def __init__(self, tk):
            self.tk = tk

        def __call__(self, call):
            pass

        def fast(self, call):
            return lambda values: None

    null.compile = lambda tk, target=None: Launcher(tk)
    sys.modules[null.__name__] = null
    BACKENDS["null"] = null.__name__
    ks = {True: kernels(True), False: kernels(False)}
    rows = []
    for name, kernel, call_args, _ in cases("cpu"):
        row = {"case": name}
        for fast in (True, False):
            k = ks[fast][kernel]
            row["fast" if fast else "full"] = host_us(lambda: k(*call_args, backend="null"), args.calls,
                                                      args.batches, lambda: None)
        k = ks[True][kernel]
        row["key only"] = host_us(lambda: k._fast.signature.key(call_args, {}, "null", None), args.calls,
                                  args.batches, lambda: None)
        rows.append(row)
    print(f"CPU side only (no-op launcher), python {sys.version.split()[0]}, torch {torch.__version__}; "
          f"{args.calls} calls x {args.batches} batches, median")
    print(table(rows, ["key only", "fast", "full"]))


def table(rows: list[dict], cols: list[str]) -> str:
    def cell(v):
        return f"{v:.1f}" if isinstance(v, float) else str(v)
    lines = ["| case | " + " | ".join(f"{c} (us/call)" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    lines += ["| " + r["case"] + " | " + " | ".join(cell(r.get(c, "-")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="triton,cuda")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--tune", action="store_true", help="let the first call autotune (default: the defaults)")
    ap.add_argument("--cpu", action="store_true", help="measure the Python side only, on the CPU")
    args = ap.parse_args()
    cpu(args) if args.cpu else gpu(args)


if __name__ == "__main__":
    main()
