"""The cost model that ranks layout choices: shared-memory wavefronts, conversions, vector widths.

Shared memory: every statement that touches a shared tile is an `Access` (a
copy moving vectors along a task mapping, or a gemm loading fragments with
ldmatrix). Realized on a candidate `SharedLayout`, an access becomes warp-wide
instructions whose lane addresses `swizzle.wavefronts` judges; a layout that
cannot serve the access as intended (no 16-byte contiguity for ldmatrix, a
narrower run for a vector) gets the narrower instruction it would need.

`Cost` sums a plan; plans compare lexicographically: first round trips
through shared memory (layout conversions and cross-warp reductions, each a
barrier), then bank conflicts, then registers per thread beyond a budget
(replicated operands cost here), then shared wavefronts, then global memory
instructions, then registers, then warp shuffles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np

from . import tiling, tv
from .algebra import Layout
from .shared import SharedLayout
from .swizzle import bank_conflicts, wavefronts
from .task_mapping import TaskMapping


REGISTER_BUDGET = 128  # 32-bit registers per thread that leave room for 4 blocks of 128 threads per SM


@dataclass(frozen=True, order=True)
class Cost:
    round_trips: int = 0  # layout conversions and cross-warp reductions through shared memory
    bank_conflicts: int = 0  # extra shared-memory wavefronts, all warps, one pass over the body
    register_excess: int = 0  # registers per thread beyond REGISTER_BUDGET (spills, lost occupancy)
    smem_wavefronts: int = 0
    global_instrs: int = 0  # global loads/stores, summed over threads
    registers: int = 0  # 32-bit registers per thread that register tiles take
    shuffles: int = 0

    def __add__(self, o: "Cost") -> "Cost":
        return Cost(*(a + b for a, b in zip(self.astuple(), o.astuple())))

    def astuple(self) -> tuple[int, ...]:
        return (self.round_trips, self.bank_conflicts, self.register_excess, self.smem_wavefronts,
                self.global_instrs, self.registers, self.shuffles)

    def __str__(self) -> str:
        return (f"{self.round_trips} shared round trips, {self.bank_conflicts} bank conflicts, "
                f"{self.registers} registers, {self.smem_wavefronts} shared wavefronts, "
                f"{self.global_instrs} global accesses, {self.shuffles} shuffles")


# ----------------------------------------------------------------------------- shared memory model

@lru_cache(maxsize=1024)
def offset_table(layout: SharedLayout) -> np.ndarray:
    """`[rows, cols]` element offsets of a shared layout."""
    r = np.arange(layout.rows, dtype=np.int64)[:, None]
    c = np.arange(layout.cols, dtype=np.int64)[None, :]
    return np.asarray(layout.offsets(r, c), dtype=np.int64)


@lru_cache(maxsize=1024)
def contiguity(layout: SharedLayout, axis: int) -> int:
    """Largest power of two w: aligned runs of w elements along `axis` are w consecutive offsets
    starting at a multiple of w (what one vector access of w elements needs)."""
    off = offset_table(layout)
    if axis == 0:
        off = off.T
    w = 1
    while off.shape[1] % (2 * w) == 0:
        g = off.reshape(off.shape[0], -1, 2 * w)
        if not ((np.diff(g, axis=2) == 1).all() and (g[:, :, 0] % (2 * w) == 0).all()):
            break
        w *= 2
    return w


@dataclass(frozen=True)
class CopyAccess:
    """Threads move `vec`-element vectors of a shared tile along its last axis, as `mapping` says."""

    kind: str  # "read" or "write"
    mapping: TaskMapping
    vec: int
    elem_bytes: int
    cols: int


@dataclass(frozen=True)
class FragmentAccess:
    """A gemm's warps load `role` fragments of a shared operand (ldmatrix where the layout allows)."""

    role: str  # "A" or "B"
    m: int
    n: int
    k: int
    grid: tiling.MmaTiling
    trans_tile: bool
    fragment: TaskMapping  # fallback when no 16-byte run exists: per-thread loads of the fragment
    elem_bytes: int
    cols: int


Access = Union[CopyAccess, FragmentAccess]


@dataclass(frozen=True)
class Realized:
    """An access as instructions on a given layout."""

    instr: str
    vec: int  # elements per lane per instruction
    wavefronts: int
    conflicts: int
    count: int  # warp-wide instructions


@lru_cache(maxsize=4096)
def fragment_instr(layout: SharedLayout, access: "FragmentAccess") -> tuple[str, int, bool | None]:
    """The instruction a warp reads its fragments of a shared operand with, without counting wavefronts:
    (name, elements per lane, whether ldmatrix reads along the k axis: None for plain loads)."""
    y = tiling.y_axis(access.role, access.trans_tile)
    if access.elem_bytes == 2:
        for along_y, axis in ((True, y), (False, 1 - y)):
            if contiguity(layout, axis) >= 8:
                return ("ldmatrix.x4" if _x4(access) else "ldmatrix.x2") + ("" if along_y else ".trans"), 8, along_y
    vec = min(tv.vector_run(access.fragment, y), contiguity(layout, y), max(16 // access.elem_bytes, 1))
    return f"ld.shared.{_width(vec * access.elem_bytes)}", vec, None


def _x4(access: "FragmentAccess") -> bool:
    g = access.grid
    warp_x = (access.m // g.wm) if access.role == "A" else (access.n // g.wn)
    return access.role == "A" or warp_x % 16 == 0


@lru_cache(maxsize=4096)
def realize(layout: SharedLayout, access: Access) -> Realized:
    if isinstance(access, FragmentAccess):
        name, vec, along_y = fragment_instr(layout, access)
        if along_y is not None:
            _, lanes = tiling.ldmatrix_lanes(access.role, access.m, access.n, access.k, access.grid,
                                             access.trans_tile, along_y)
            return _count(layout, name, 8, lanes, 16)
        y = tiling.y_axis(access.role, access.trans_tile)
        return _mapping_access(layout, "ld.shared", access.fragment, vec, access.elem_bytes, y)
    vec = min(access.vec, contiguity(layout, 1))
    op = "ld.shared" if access.kind == "read" else "st.shared"
    return _mapping_access(layout, op, access.mapping, vec, access.elem_bytes, 1)


def _mapping_access(layout: SharedLayout, op: str, mapping: TaskMapping, vec: int, elem_bytes: int,
                    axis: int) -> Realized:
    vec = min(vec, tv.vector_run(mapping, axis))
    lin = tv.table(mapping)[:, ::vec]  # each vector's first element
    rows, cols = divmod(lin, layout.cols)
    t, g = lin.shape
    lanes = np.stack([rows, cols], axis=-1)
    pad = -t % tiling.WARP  # a mapping over part of a warp: the other lanes access nothing
    if pad:
        lanes = np.concatenate([lanes, np.full((pad, g, 2), -1, dtype=lanes.dtype)])
    lanes = lanes.reshape(-1, tiling.WARP, g, 2).transpose(0, 2, 1, 3)
    nbytes = vec * elem_bytes
    return _count(layout, f"{op}.{_width(nbytes)}", vec, lanes.reshape(-1, tiling.WARP, 2), nbytes)


def _width(nbytes: int) -> str:
    return {1: "b8", 2: "b16", 4: "b32", 8: "v2.b32", 16: "v4.b32"}.get(nbytes, f"{nbytes}B")


def _count(layout: SharedLayout, name: str, vec: int, lanes: np.ndarray, access_bytes: int) -> Realized:
    off = offset_table(layout)
    active = lanes[..., 0] >= 0
    addr = np.where(active, off[np.maximum(lanes[..., 0], 0), np.maximum(lanes[..., 1], 0)] * layout.elem_bytes, -1)
    unique, counts = np.unique(addr, axis=0, return_counts=True)
    waves = conflicts = 0
    for row, n in zip(unique.tolist(), counts.tolist()):
        pattern = [a if a >= 0 else None for a in row]
        waves += n * wavefronts(pattern, access_bytes)
        conflicts += n * bank_conflicts(pattern, access_bytes)
    return Realized(name, vec, waves, conflicts, len(addr))
