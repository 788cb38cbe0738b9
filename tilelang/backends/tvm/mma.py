"""Tensor-core gemm for the cuda target: mma.sync m16n8k16, as the layout plan says.

Which gemms run on mma.sync, and on which warp grid, is the plan's (`GemmPlan.kind` "mma",
`GemmPlan.tiling` an `MmaTiling`); this module only prints the addresses.  Warp w owns block
(w // wn % wm, w % wn) of the accumulator; with a k split (`wk` > 1) the block's warps form wk
such grids, the group tx // (32 wm wn) taking its own run of k16 steps, and the groups' partial
accumulators are added before the accumulator is read (lower_cuda.py).  The accumulator is held
in the plan's C fragment mapping (`tilelang.layout.tiling.mma_fragments`): value
(fi * ni + fj) * 4 + i of a thread is element c_i of its warp's fragment (fi, fj), the slot the
mma intrinsic writes.  An operand the plan holds in its fragment mapping is read from its
registers: value (fi * steps + gk) * 8 + i of A is a_i of fragment (fi, gk), value
(gk * ni + fj) * 4 + i of B is b_i of fragment (gk, fj).  Other operands are read from shared
memory (a register operand from its shared mirror) with ldmatrix.x4 (.trans where the tile is
stored k-major for A or n-major for B; an odd last B fragment with .x2), addressed as elements
of the tile (not raw offsets) so that TVM's buffer compaction and storage sharing keep them
right; the tile's layout then places them (smem.py).
"""
from __future__ import annotations

from ...layout.tiling import MmaTiling

ABBREV = {"f16": "fp16", "bf16": "bf16"}


def row0(t: MmaTiling) -> str:
    """First row of this thread's warp block."""
    return f"(tx // 32 // {t.wn}{f' % {t.wm}' if t.wk > 1 else ''}) * {t.m // t.wm}"


def col0(t: MmaTiling) -> str:
    return f"(tx // 32 % {t.wn}) * {t.n // t.wn}"


def steps(t: MmaTiling, k: int) -> int:
    """k16 steps of each k group."""
    return k // 16 // t.wk


def kstep(t: MmaTiling, k: int) -> str:
    """The k16 step a warp is at: its k group's first step, plus the loop's `gk`."""
    return "gk" if t.wk == 1 else f"(tx // {32 * t.wm * t.wn} * {steps(t, k)} + gk)"


def ldmatrix_at(outer: str, k: str, k_inner: bool) -> tuple[str, str]:
    """The element (row, column of the stored tile) this lane addresses in an 8x8 matrix at (outer, k).

    `k_inner`: the tile is stored [outer, k] (plain ldmatrix); else [k, outer] (.trans)."""
    if k_inner:
        return f"{outer} + tx % 8", k
    return f"{k} + tx % 8", outer


def a_at(t: MmaTiling, trans_a: bool, ks: str = "gk") -> tuple[str, str]:
    """ldmatrix.x4 of A fragment `fi` at k step `ks`: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
    (rows 0-7, k 8-15), (rows 8-15, k 8-15), i.e. registers a0a1, a2a3, a4a5, a6a7."""
    return ldmatrix_at(f"{row0(t)} + fi * 16 + tx % 32 // 8 % 2 * 8", f"{ks} * 16 + tx % 32 // 16 * 8",
                        not trans_a)


def b_at(t: MmaTiling, trans_b: bool, ks: str = "gk") -> tuple[str, str]:
    """ldmatrix.x4 of B fragments 2 fp and 2 fp + 1 at k step `ks`: matrices (n 0-7, k 0-7),
    (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)."""
    return ldmatrix_at(f"{col0(t)} + fp * 16 + tx % 32 // 16 * 8", f"{ks} * 16 + tx % 32 // 8 % 2 * 8",
                        trans_b)


def b_last_at(t: MmaTiling, trans_b: bool, ks: str = "gk") -> tuple[str, str]:
    """ldmatrix.x2 of the last B fragment where ni is odd (lanes 0-15 address it)."""
    return ldmatrix_at(f"{col0(t)} + {(t.ni - 1) * 8}", f"{ks} * 16 + tx % 16 // 8 * 8", trans_b)


def register_at(role: str, t: MmaTiling, k: int) -> str:
    """The first value, in an operand held in its fragment mapping, of the fragment step gk - 1's mma
    reads (A fragment fi, B fragment fj)."""
    if role == "A":
        return f"(fi * {steps(t, k)} + gk - 1) * 8"
    return f"((gk - 1) * {t.ni} + fj) * 4"
