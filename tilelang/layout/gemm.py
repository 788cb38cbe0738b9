"""Which instruction a gemm can run on, and on which warp (group) grid: the one place that decides.

* mma.sync.m16n8k16 needs f16 (or bf16) operands of one dtype, an f32 accumulator whose
  m x n splits into whole 16x8 fragments over all of the block's warps (`mma_tiling`), and a
  k that is a multiple of 16; its shared operands are read with ldmatrix, so their layouts
  must keep 8 consecutive elements of a row together.
* wgmma.m64nNk16 (sm_90a) needs the same dtypes, operands in shared memory (shared tiles, or
  register tiles only gemms read, which are then kept in shared memory), an accumulator whose
  every gemm qualifies and that splits into m64 instructions over the warpgroups
  (`wgmma_tiling`), and operand layouts a matrix descriptor can express (`operands`).
* Anything else runs as a SIMT fma loop.

The layout pass asks these questions; the backends read its answers (`GemmPlan`).
"""
from __future__ import annotations

from ..ir import nodes as N
from .shared import SharedLayout
from .tiling import MmaTiling, mma_tiling
from .wgmma import OperandPlan, WgmmaTiling, operand_plan, wgmma_tiling

MMA_DTYPES = ("f16", "bf16")


def dims(tk, g: N.Gemm) -> tuple[int, int, int]:
    """(m, n, k) of a gemm."""
    a, c = tk.tiles[g.a.name], tk.tiles[g.acc.name]
    return c.shape[0], c.shape[1], a.shape[0] if g.trans_a else a.shape[1]


def mma_accumulator(tk, g: N.Gemm, split_k: bool = False, in_registers=lambda name: False) -> MmaTiling | None:
    """The warp grid of an mma.sync gemm's accumulator (None: it cannot use mma.sync): its dtypes must
    fit the instruction and m16n8 fragments tile its accumulator over the block's warps (with
    `split_k`, over warp groups that each sum part of k, when the accumulator is too small). An
    operand `in_registers` is not replicated over warps (each warp would load and convert it again):
    the warps split k instead where they must."""
    a, b, c = (tk.tiles[x.name] for x in (g.a, g.b, g.acc))
    m, n, k = dims(tk, g)
    if not (a.dtype.name in MMA_DTYPES and b.dtype == a.dtype and c.dtype.name == "f32" and k % 16 == 0
            and m % 16 == 0 and n % 8 == 0):
        return None
    return mma_tiling(m, n, tk.threads, k if split_k else None, not in_registers(g.a.name),
                      not in_registers(g.b.name)) or (mma_tiling(m, n, tk.threads, k if split_k else None)
                                                      if split_k else None)


def mma_ok(tk, g: N.Gemm) -> bool:
    """Whether the gemm's dtypes and shapes fit mma.sync.m16n8k16 over the block's warps."""
    return mma_accumulator(tk, g) is not None


def wgmma_accumulators(tk, gemms: list[N.Gemm], in_shared) -> dict[str, WgmmaTiling]:
    """Accumulators every gemm into which can use wgmma, with their warpgroup grids (operand
    layouts not yet checked); `in_shared(name)` says whether an operand tile is read from shared memory."""
    out: dict[str, WgmmaTiling] = {}
    refused: set[str] = set()
    for g in gemms:
        c = tk.tiles[g.acc.name]
        til = wgmma_tiling(c.shape[0], c.shape[1], tk.threads) if c.scope == "register" else None
        if til is None or not all(in_shared(x.name) for x in (g.a, g.b)) or not mma_ok(tk, g) \
                or g.acc.name in refused:
            refused.add(g.acc.name)
            out.pop(g.acc.name, None)
        else:
            out[g.acc.name] = til
    return out


def wgmma_operands(tk, g: N.Gemm, til: WgmmaTiling, lay_a: SharedLayout,
                   lay_b: SharedLayout) -> tuple[OperandPlan, OperandPlan] | None:
    """The matrix descriptors of both operands for every warpgroup and k-step, or None where a
    layout is one a descriptor cannot express."""
    a = tk.tiles[g.a.name]
    eb = max(a.dtype.bits, 8) // 8
    k = dims(tk, g)[2]
    # A is [m, k] (K-major) or [k, m] (trans_a: M-major); B is [k, n] (N-major) or [n, k] (trans_b: K-major)
    pa = operand_plan(lay_a, eb, not g.trans_a, (lambda mn, kk: (kk, mn)) if g.trans_a else (lambda mn, kk: (mn, kk)),
                      k, til.m, til.rows, til.wgm, 64)
    pb = operand_plan(lay_b, eb, g.trans_b, (lambda mn, kk: (mn, kk)) if g.trans_b else (lambda mn, kk: (kk, mn)),
                      k, til.n, til.cols, til.wgn, til.inst_n)
    return None if pa is None or pb is None else (pa, pb)


def ldmatrix_readable(layout: SharedLayout) -> bool:
    """ldmatrix reads 8 consecutive 16-bit elements of a row as one 16-byte row of a matrix."""
    return layout.contiguous_run(8)
