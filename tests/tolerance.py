"""How far two correct implementations of one kernel may differ, derived from the computation.

Two correct backends may sum the same f32 terms in different orders: numpy's matmul picks a BLAS
kernel by CPU (OpenBLAS on an AMD EPYC sums differently from one on an Intel Xeon), a GPU's mma and
warp shuffles pick theirs. A sum of n terms then differs by at most about n * u * sum(|terms|)
(u the accumulator's unit roundoff), and a result rounded to its output dtype may round the other
way: one unit in the last place. A value rounded to a narrow dtype *inside* the kernel (attention's
`T(p)` before the second gemm) can flip too, and that flip of one part in 1/u_T is carried on.

So per element of an output array, with `scale` the array's largest magnitude (standing in for
sum(|terms|), which the comparison does not know):

    |got - want| <= ulp_out(want) + SAFETY * (n * u_acc + flips * u_narrow) * scale

and exactly zero where the kernel has no sum whose order a backend chooses (no `gemm`, no
reduction): elementwise arithmetic in f32 is the same everywhere. A wrong result (an unwritten
element, a wrong mask, an f16 accumulator where f32 was promised) is off by a sizeable fraction of
`scale` and fails.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilelang.ir import nodes as N
from tilelang.ir.dtypes import DType
from tilelang.ir.visit import sub_exprs, walk_stmts

# unit roundoff (half an ulp at 1.0) by numpy dtype name
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
SAFETY = 2.0  # summation bounds grow like n*u in the worst case; 2 covers the rounding of the bound itself


@dataclass(frozen=True)
class Accumulation:
    """What a kernel sums, read off its typed IR.

    `sums`: it has a gemm or a reduction (whose order a backend may choose); `u_acc`: the unit
    roundoff of its widest-error accumulator (f32, or f16 for a gemm into an f16 tile);
    `u_narrow`: of the narrow float dtype intermediates are rounded to before further sums (0: none)."""

    sums: bool
    u_acc: float
    u_narrow: float


def accumulation(tk) -> Accumulation:
    """From a `TypedKernel`: the gemms, reductions and narrow casts of its body."""
    body = tuple(walk_stmts(tk.kernel.body))
    gemm_accs = [tk.tiles[s.acc.name].dtype for s in body if isinstance(s, N.Gemm)]
    reduces = any(isinstance(x, N.Reduce) for s in body for x in _exprs(s))
    narrow = [x.dtype for s in body if isinstance(s, N.Assign) for x in _exprs(s)
              if isinstance(x, N.Cast) and isinstance(x.dtype, DType) and x.dtype.name in ("f16", "bf16")]
    u_acc = max([UNIT_ROUNDOFF["float32"]] + [_u(d) for d in gemm_accs])
    return Accumulation(bool(gemm_accs) or reduces, u_acc, max([0.0] + [_u(d) for d in narrow]))


def allowed(want: np.ndarray, acc: Accumulation, n: int) -> np.ndarray:
    """Per element of `want` (an output array): the largest |got - want| two correct backends can show
    when the longest sum has `n` terms."""
    w = np.abs(np.asarray(want).astype(np.float64))
    if not acc.sums or not _is_float(want.dtype):  # integers compare exactly
        return np.zeros_like(w)
    fin = w[np.isfinite(w)]
    scale = float(fin.max()) if fin.size else 0.0
    return ulp(want) + SAFETY * (n * acc.u_acc + acc.u_narrow) * scale


def ulp(a: np.ndarray) -> np.ndarray:
    """The spacing of `a`'s dtype at each element's magnitude (subnormals: the smallest spacing)."""
    if not _is_float(a.dtype):  # integers compare exactly
        return np.zeros(a.shape)
    if a.dtype.name == "bfloat16":
        tiny, mant = 2.0**-126, 7
    else:
        info = np.finfo(a.dtype)
        tiny, mant = float(info.tiny), int(info.nmant)
    w = np.maximum(np.abs(a.astype(np.float64)), tiny)
    w = np.where(np.isfinite(w), w, tiny)
    return np.exp2(np.floor(np.log2(w)) - mant)


def _is_float(dt: np.dtype) -> bool:
    return dt.kind == "f" or dt.name == "bfloat16"


def _u(d: DType) -> float:
    return {"f32": UNIT_ROUNDOFF["float32"], "f16": UNIT_ROUNDOFF["float16"],
            "bf16": UNIT_ROUNDOFF["bfloat16"]}.get(d.name, 0.0)


def _exprs(s: N.Stmt):
    """Every expression node under a statement's fields (not into loop bodies)."""
    for f in ("value", "src", "dst", "init"):
        v = getattr(s, f, None)
        if v is not None and not isinstance(v, (str, bool)):
            yield from sub_exprs(v)
