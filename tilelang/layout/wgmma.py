"""Hopper warpgroup MMA (`wgmma.mma_async`, sm_90a) as the layout pass sees it: tiling, register
fragments, and whether a shared layout can be described to the hardware.

* A warpgroup is 4 consecutive warps (128 threads).  `wgmma.mma_async.m64nNk16` multiplies a
  64 x 16 A by a 16 x N B (N a multiple of 8, at most 256), both read from shared memory through
  64-bit matrix descriptors, and accumulates into a 64 x N f32 fragment spread over the
  warpgroup: warp w holds rows 16w..16w+15, laid out like N/8 mma.m16n8 accumulators side by side.
* `WgmmaTiling`: the block's warpgroups form a wgm x wgn grid over the accumulator; each
  warpgroup repeats the m64 instruction `mi` times down its rows and splits its columns into
  `nsplit` instructions of `inst_n` columns.
* `descriptor`: the descriptor of one instruction's operand, read off a shared layout (start
  address, leading / stride byte offsets, swizzle mode) and then checked element by element
  against the hardware's canonical-layout address model, so a layout the descriptor cannot
  express is refused (the gemm stays on mma.sync) rather than read wrongly.  The CUDA backend
  prints the descriptors the plan holds; it decides nothing about them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import tv
from .atoms import MMA_M16N8K16_C
from .shared import SharedLayout
from .task_mapping import TaskMapping, local, spatial

WARPGROUP = 128
MAX_N = 256
SWIZZLE_MODE = {128: 1, 64: 2, 32: 3}  # descriptor bits 62-63 for 128B / 64B / 32B swizzle


@dataclass(frozen=True)
class WgmmaTiling:
    m: int
    n: int
    wgm: int
    wgn: int

    @property
    def rows(self) -> int:  # accumulator rows of one warpgroup
        return self.m // self.wgm

    @property
    def cols(self) -> int:  # accumulator columns of one warpgroup
        return self.n // self.wgn

    @property
    def mi(self) -> int:  # m64 instructions down a warpgroup's rows
        return self.rows // 64

    @property
    def ni(self) -> int:  # n8 column groups of a warpgroup
        return self.cols // 8

    @property
    def nsplit(self) -> int:  # instructions across a warpgroup's columns
        return next(s for s in range(1, self.ni + 1) if self.ni % s == 0 and self.cols // s <= MAX_N)

    @property
    def inst_n(self) -> int:
        return self.cols // self.nsplit


def wgmma_tiling(m: int, n: int, threads: int) -> WgmmaTiling | None:
    """The warpgroup grid reading the least shared memory per k-step (each instruction reads its
    64 rows of A and inst_n columns of B), the widest instructions on a tie; None if m64nNk16
    cannot tile m x n."""
    if threads % WARPGROUP:
        return None
    groups, best = threads // WARPGROUP, None
    for wgm in range(1, groups + 1):
        wgn = groups // wgm
        if groups % wgm or m % (64 * wgm) or n % (8 * wgn):
            continue
        t = WgmmaTiling(m, n, wgm, wgn)
        cost = (t.mi * t.nsplit * (64 + t.inst_n), -t.inst_n)
        if best is None or cost < best[0]:
            best = (cost, t)
    return None if best is None else best[1]


def accumulator(t: WgmmaTiling) -> TaskMapping:
    """The accumulator fragments as a task mapping: warpgroup g owns the block (g // wgn, g % wgn)
    of the grid; value (i * ni + j) * 4 + e of a thread is element e of n8 group j of its m64
    instruction i (the order the instruction's registers take)."""
    return tv.canonical(spatial(t.wgm, t.wgn) * local(t.mi, 1) * spatial(4, 1) * local(1, t.ni) * MMA_M16N8K16_C)


def describe(t: WgmmaTiling) -> str:
    return (f"{t.wgm}x{t.wgn} warpgroups, {t.mi} x m64n{t.inst_n}{f' x {t.nsplit}' if t.nsplit > 1 else ''} "
            f"per warpgroup")


# ----------------------------------------------------------------------------- descriptors

@dataclass(frozen=True)
class Descriptor:
    """A wgmma shared-memory matrix descriptor, byte quantities (the hardware stores them >> 4)."""
    start: int       # from the tile's base address (which must be aligned to the swizzle period)
    lbo: int         # leading dimension byte offset
    sbo: int         # stride dimension byte offset
    width: int       # swizzle atom row: 128, 64 or 32 bytes

    @property
    def high(self) -> int:
        """Every field but the start address (constant for a tile)."""
        return ((self.lbo >> 4) << 16) | ((self.sbo >> 4) << 32) | (SWIZZLE_MODE[self.width] << 62)

    def encode(self, base: int) -> int:
        """The 64-bit descriptor for a tile at shared-memory address `base`."""
        return self.high | (((base + self.start) & 0x3FFFF) >> 4)

    def address(self, mn, k, elem_bytes: int, k_major: bool):
        """Byte address (from the tile's base) the hardware reads for operand element (mn, k)
        of the instruction: the canonical layout's address, then the swizzle on address bits
        (ints, or numpy arrays of them)."""
        w = self.width
        if k_major:  # 8-row core groups SBO apart, rows w bytes apart, k contiguous
            a = self.start + (mn // 8) * self.sbo + (mn % 8) * w + k * elem_bytes
        else:        # w-byte runs of mn, LBO apart; k rows w bytes apart in groups of 8, SBO apart
            a = (self.start + (mn * elem_bytes // w) * self.lbo + mn * elem_bytes % w
                 + (k % 8) * w + (k // 8) * self.sbo)
        bits = (w // 16).bit_length() - 1
        return a ^ (((a >> 7) & ((1 << bits) - 1)) << 4)


def descriptor(lay: SharedLayout, elem_bytes: int, k_major: bool, tile_coord: Callable[[int, int], tuple[int, int]],
               mn0: int, k0: int, mn_extent: int) -> Descriptor | None:
    """The descriptor of the operand block (mn0.., k0..) of mn_extent x 16 elements, or None.

    `tile_coord(mn, k)` is the tile coordinate of operand element (mn, k); `k_major` whether k
    is the tile's contiguous axis."""
    sw = lay.swizzle
    if sw is None or sw.bits == 0 or sw.shift != 3 or (16 // elem_bytes) != 1 << sw.base:
        return None
    width = 16 << sw.bits
    if width not in SWIZZLE_MODE:
        return None

    def lin(mn: int, k: int) -> int:
        return lay.linear(*tile_coord(mn, k)) * elem_bytes

    start = lin(mn0, k0)
    if k_major:
        lbo, sbo = 16, (lin(mn0 + 8, k0) - start if mn_extent > 8 else 0)
    else:
        per_row = width // elem_bytes
        lbo = lin(mn0 + per_row, k0) - start if mn_extent > per_row else 0
        sbo = lin(mn0, k0 + 8) - start
    d = Descriptor(start, lbo, sbo, width)
    if any(x < 0 or x % 16 or x >> 4 >= 1 << 14 for x in (start, lbo, sbo)):
        return None
    mn, k = np.meshgrid(np.arange(mn_extent), np.arange(16), indexing="ij")  # every element, at once
    rows, cols = tile_coord(mn0 + mn, k0 + k)
    if not (d.address(mn, k, elem_bytes, k_major) == lay.offsets(rows, cols) * elem_bytes).all():
        return None
    return d


@dataclass(frozen=True)
class OperandPlan:
    """An operand's descriptors: the constant high bits, the start of the block each warpgroup
    begins at (`wg_stride` bytes apart along its grid axis) and, per (instruction, k-step), the
    start relative to that."""
    high: int
    wg_stride: int
    starts: tuple[tuple[int, ...], ...]   # [instruction index][k-step] -> bytes from the warpgroup's block
    k_major: bool


def operand_plan(lay: SharedLayout, elem_bytes: int, k_major: bool, tile_coord, k: int, extent: int,
                 per_group: int, groups: int, inst: int) -> OperandPlan | None:
    """Descriptors of one operand for every warpgroup (`groups` along the operand's mn axis, each
    `per_group` wide, in instructions of `inst` rows / columns) and k-step; None if one is not
    expressible or the warpgroups' starts are not evenly spaced."""
    descs = {}
    for g in range(groups):
        for i in range(per_group // inst):
            for kk in range(0, k, 16):
                d = descriptor(lay, elem_bytes, k_major, tile_coord, g * per_group + i * inst, kk, inst)
                if d is None:
                    return None
                descs[g, i, kk] = d
    if len({(d.lbo if d.lbo else None, d.sbo, d.width) for d in descs.values()}) != 1:
        return None
    first = descs[0, 0, 0]
    stride = descs[1, 0, 0].start - first.start if groups > 1 else 0
    if any(d.start != descs[0, i, kk].start + g * stride for (g, i, kk), d in descs.items()):
        return None
    high = Descriptor(0, max(d.lbo for d in descs.values()), first.sbo, first.width).high
    starts = tuple(tuple(descs[0, i, kk].start for kk in range(0, k, 16)) for i in range(per_group // inst))
    return OperandPlan(high, stride, starts, k_major)
