"""The TVM cuda lowering's code, run on the CPU (tests/tvm_cuda_emulator.py) against the reference interpreter.

Every case of test_backend_tvm's GPU test (the library and the constructs at small tiles: the
scalar gemm path, reductions, mirrors, dequants, a k split over warp groups, a register mma
operand), and every library kernel with a gemm at its default tiles, where the plan puts its
gemms on mma.sync over its warp grids, keeps operands in swizzled shared memory (resident tiles
included) and recomputes its iota tiles.  The emulator
runs each CUDA thread and meets them at barriers and warp collectives, so wrong mappings,
layouts, fragment addresses or a missing barrier between threads show up as wrong results.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import tilelang

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_backend_tvm import CPU_CASES, TOL, _lowerable, arguments, compare, library_cases  # noqa: E402
from tilelang.ir import nodes as N  # noqa: E402
from tilelang.ir.visit import walk_stmts  # noqa: E402
from tilelang.layout import infer_layouts  # noqa: E402
from tilelang.layout.plan import GemmPlan  # noqa: E402
from tilelang.runtime.args import bind  # noqa: E402
from tvm_cuda_emulator import emulate  # noqa: E402


def _check(case, dt: str, consts: dict, args: list):
    k = case.kernel()
    tk = k.lower(**bind(k.ir, tuple(args), consts).consts)
    want = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    k(*want, backend="reference", **consts)
    emulate(tk, bind(k.ir, tuple(args), consts))
    rel, nan_mismatch = compare(args, want)
    assert nan_mismatch == 0 and rel < TOL[dt], (rel, nan_mismatch)
    return tk


@pytest.mark.parametrize("case,dt", [pytest.param(c, dt, id=f"{c.id}-{dt}") for c in CPU_CASES for dt in c.dtypes])
def test_small_tiles(case, dt):
    if not _lowerable(case, dt):  # a refusal tests/refusals.py expects
        return
    args, consts = arguments(case, dt)
    _check(case, dt, consts, args)


def _one_kv_head(args: list) -> list:
    """Attention arguments cut to the first batch and kv head (fewer blocks to emulate); per-sequence
    lengths ([B, 1]) to the first batch with them."""
    def cut(a):
        if isinstance(a, np.ndarray) and a.ndim >= 4:
            return np.ascontiguousarray(a[:1, :a.shape[1] // 2])
        if isinstance(a, np.ndarray) and a.ndim == 2 and a.dtype.kind == "i":
            return np.ascontiguousarray(a[:1])
        return a
    return [cut(a) for a in args]


GEMM_KERNELS = [c for c in library_cases() if any(isinstance(s, N.Gemm) for s in walk_stmts(c.kernel().ir.body))]


@pytest.mark.parametrize("case", GEMM_KERNELS, ids=lambda c: c.id)
def test_default_tiles_run_the_plans_mma(case):
    if not _lowerable(case, "f16"):  # a refusal tests/refusals.py expects
        return
    args, consts = arguments(case, "f16")
    if case.id.startswith("attention"):
        args = _one_kv_head(args)
    consts = {k: v for k, v in consts.items() if not k.startswith("B")}  # the kernel's own tiles
    tk = _check(case, "f16", consts, args)
    assert {p.kind for p in infer_layouts(tk, "sm_80").stmts if isinstance(p, GemmPlan)} == {"mma"}


KERNELS = Path(__file__).resolve().parent.parent / "kernels"
ANNOTATED = {  # (kernel, declaration, annotated declaration, constants, the plan's gemm instructions)
    "padded": ("gemm:gemm", "a = shared(T[BM, BK]);", "a = shared(T[BM, BK], layout=padded(8));", {}, ["mma"]),
    "col_major": ("gemm:gemm", "a = shared(T[BM, BK]);", "a = shared(T[BM, BK], layout=col_major);", {}, ["fma"]),
    "swizzle_across_rows": ("gemm:gemm", "b = shared(T[BK, BN]);", "b = shared(T[BK, BN], layout=swizzle(3, 4, 3));",
                            {}, ["mma"]),
    "fewer_threads": ("elementwise:add", "x = register(f32[BM, BN]);",
                      "x = register(f32[BM, BN], layout=spatial(4, 8) * local(1, 4));", dict(BM=4, BN=32), []),
    "replicated": ("elementwise:add", "x = register(f32[BM, BN]);",
                   "x = register(f32[BM, BN], layout=replicate(2) * spatial(4, 8) * local(1, 4));", dict(BM=4, BN=32),
                   []),
}


@pytest.mark.parametrize("name", ANNOTATED)
def test_annotated_layouts_compute_the_same(name):
    """Layouts the lowering realizes each its own way: padded rows, a transposed buffer (which ldmatrix
    cannot read: the plan, and so the code, takes the scalar gemm), a swizzle moving elements across
    rows, a mapping over fewer threads than the block, replicated over threads."""
    cid, old, new, consts, kinds = ANNOTATED[name]
    case = next(c for c in library_cases() if c.id == cid)
    file, kernel = cid.split(":")
    src = (KERNELS / f"{file}.tile").read_text()
    assert old in src
    case = type(case)(lambda: tilelang.loads(src.replace(old, new), f"{file}.tile")[kernel], case.make, case.id)
    args, _ = arguments(case, "f16")
    tk = _check(case, "f16", consts, args)
    assert [p.kind for p in infer_layouts(tk, "sm_80").stmts if isinstance(p, GemmPlan)] == kinds
