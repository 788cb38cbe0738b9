"""Tensor-core gemm for the cuda target: mma.sync m16n8k16 (f16/bf16 operands, f32 accumulator).

A gemm qualifies when both operands are f16 (or both bf16), the accumulator is an f32
register tile whose m x n splits into whole 16x8 fragments over all warps
(`tilelang.layout.tiling.mma_tiling`, the tiling the CUDA backend uses too), and k is a
multiple of 16.  Its accumulator is then held in the mma fragment layout: warp w owns block (w // wn, w % wn) of the tile, and slot
v of a thread is value v % 4 of fragment (v // 4 // ni, v // 4 % ni) (PTX "c_i": bit 0 is
column + 1, bit 1 is row + 8).  Every register tile of that shape takes the same layout, so
elementwise epilogues on the accumulator stay inside their thread.  Operands are read from
shared memory (a register operand from its shared mirror) with ldmatrix.x4 (.trans where
the tile is stored k-major for A or n-major for B), addressed as elements of the tile (not raw
offsets) so that TVM's buffer compaction and storage sharing keep them right.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir import nodes as N
from ...ir.visit import walk_stmts
from ...layout.tiling import MmaTiling, mma_tiling

ABBREV = {"f16": "fp16", "bf16": "bf16"}


def row0(t: MmaTiling) -> str:
    """First row of this thread's warp block."""
    return f"(tx // 32 // {t.wn}) * {t.m // t.wm}"


def col0(t: MmaTiling) -> str:
    return f"(tx // 32 % {t.wn}) * {t.n // t.wn}"


def coords(t: MmaTiling) -> tuple[str, str]:
    """The element held in slot v of thread tx."""
    row = f"{row0(t)} + v // {4 * t.ni} * 16 + v % 4 // 2 * 8 + tx % 32 // 4"
    col = f"{col0(t)} + v // 4 % {t.ni} * 8 + tx % 4 * 2 + v % 2"
    return row, col


def gemm_tiling(tk, g: N.Gemm) -> MmaTiling | None:
    """The tiling of a gemm statement that can run on tensor cores, else None (scalar path)."""
    ta, tb, tc = (tk.tiles[x.name] for x in (g.a, g.b, g.acc))
    if ta.dtype.name != tb.dtype.name or ta.dtype.name not in ABBREV or tc.dtype.name != "f32":
        return None
    if tc.scope != "register" or len(tc.shape) != 2:
        return None
    k = ta.shape[0] if g.trans_a else ta.shape[1]
    if k % 16:
        return None
    return mma_tiling(tc.shape[0], tc.shape[1], tk.threads)


@dataclass(frozen=True)
class MmaPlan:
    """Which gemms use mma and the register-tile shapes held in fragment layout."""
    gemms: dict  # id(Gemm) -> MmaTiling
    shapes: dict  # accumulator shape -> MmaTiling

    def layout(self, shape) -> MmaTiling | None:
        return self.shapes.get(tuple(shape))


def plan(tk) -> MmaPlan:
    gemms, shapes = {}, {}
    for s in walk_stmts(tk.kernel.body):
        if not isinstance(s, N.Gemm):
            continue
        t = gemm_tiling(tk, s)
        if t is None:
            continue
        shape = tuple(tk.tiles[s.acc.name].shape)
        t = shapes.setdefault(shape, t)  # one layout per shape: the first gemm's
        gemms[id(s)] = t
    return MmaPlan(gemms, shapes)


def ldmatrix_at(outer: str, k: str, k_inner: bool) -> tuple[str, str]:
    """The element (row, column of the stored tile) this lane addresses in an 8x8 matrix at (outer, k).

    `k_inner`: the tile is stored [outer, k] (plain ldmatrix); else [k, outer] (.trans)."""
    if k_inner:
        return f"{outer} + tx % 8", k
    return f"{k} + tx % 8", outer


def a_at(t: MmaTiling, trans_a: bool) -> tuple[str, str]:
    """ldmatrix.x4 of A fragment `fi` at k step `gk`: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
    (rows 0-7, k 8-15), (rows 8-15, k 8-15), i.e. registers a0a1, a2a3, a4a5, a6a7."""
    return ldmatrix_at(f"{row0(t)} + fi * 16 + tx % 32 // 8 % 2 * 8", "gk * 16 + tx % 32 // 16 * 8",
                        not trans_a)


def b_at(t: MmaTiling, trans_b: bool) -> tuple[str, str]:
    """ldmatrix.x4 of B fragments 2 fp and 2 fp + 1 at k step `gk`: matrices (n 0-7, k 0-7),
    (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)."""
    return ldmatrix_at(f"{col0(t)} + fp * 16 + tx % 32 // 16 * 8", "gk * 16 + tx % 32 // 8 % 2 * 8",
                        trans_b)


def b_last_at(t: MmaTiling, trans_b: bool) -> tuple[str, str]:
    """ldmatrix.x2 of the last B fragment where ni is odd (lanes 0-15 address it)."""
    return ldmatrix_at(f"{col0(t)} + {(t.ni - 1) * 8}", "gk * 16 + tx % 16 // 8 * 8", trans_b)
