"""Launch every library kernel once through the CUDA backend, for compute-sanitizer to watch.

    compute-sanitizer --tool memcheck --target-processes all python3 tests/cuda_sanitize_driver.py

`scripts/gpu_check.sh sanitize` runs it under memcheck, racecheck and synccheck.  Each kernel
runs on the first (smallest, odd-shaped) call of `test_backend_cuda.cases` with CuPy arrays, so
that masked edges, pipelines and reductions are all exercised while the sanitizers stay fast.
On an sm_90 device `gemm` also runs once on a shape whose rows TMA can describe (16-byte pitches,
K off the tile), so the TMA + mbarrier + wgmma pipeline is watched too (odd shapes take the
cp.async variant).
`--check` also compares the outputs with the reference interpreter (slow under a sanitizer).
Not a pytest module: the sanitizers need a process of their own.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_backend_cuda import KERNELS, TOL, cases, compare, kernel, reference  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated kernel names (default: all)")
    ap.add_argument("--check", action="store_true", help="compare with the reference interpreter")
    args = ap.parse_args()
    import cupy

    only = {n for n in args.only.split(",") if n}
    failed = 0
    for file, name in KERNELS:
        if only and name not in only:
            continue
        k = kernel(file, name)
        call, consts = next(cases(name, "f16", np.random.default_rng(0)))
        dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in call]
        try:
            k(*dev, backend="cuda", **consts)
            cupy.cuda.Device().synchronize()
        except Exception as e:  # noqa: BLE001 - report every kernel, then fail
            print(f"{file}.{name}: FAILED {type(e).__name__}: {str(e).splitlines()[0]}", flush=True)
            failed += 1
            continue
        note = ""
        if args.check:
            ref = reference(k, call, consts)
            err = max(compare(cupy.asnumpy(d), r, "f16") for d, r in zip(dev, ref) if isinstance(r, np.ndarray))
            note = f" error {err:.2g}"
            failed += err >= TOL["f16"]
        print(f"{file}.{name}: launched{note}", flush=True)
    if not only or "gemm" in only:
        failed += not _tma_gemm(cupy)
    return 1 if failed else 0


def _tma_gemm(cupy) -> bool:
    """gemm on TMA-describable operands (sm_90 only); False if it fails or the TMA kernel was not used."""
    if cupy.cuda.Device().compute_capability != "90":
        return True
    k = kernel("gemm", "gemm")
    consts = dict(BM=128, BN=256, BK=64, STAGES=4, THREADS=256)
    rng = np.random.default_rng(1)
    a, b = (cupy.asarray(rng.standard_normal(s).astype(np.float16)) for s in ((72, 264), (264, 136)))
    c = cupy.zeros((72, 136), np.float16)
    k(a, b, c, backend="cuda", **consts)
    cupy.cuda.Device().synchronize()
    launcher = k.compile("cuda", **consts)
    used = launcher.src.tma and launcher._fallback_launcher is None
    err = float(abs(cupy.asnumpy(c).astype(np.float32) - cupy.asnumpy(a).astype(np.float32) @ cupy.asnumpy(b)).max())
    print(f"gemm.gemm (TMA): {'launched' if used else 'FAILED: TMA not used'} error {err:.2g}", flush=True)
    return used and err < 0.5


if __name__ == "__main__":
    sys.exit(main())
