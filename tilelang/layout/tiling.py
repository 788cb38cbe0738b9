"""How instructions tile over a thread block: coalesced copies and mma fragments over warps.

* `coalesced`: the mapping a copy of a tile from row-major global memory wants:
  each thread moves a vector of up to 16 bytes along the contiguous (last)
  axis, neighbouring threads take neighbouring vectors, and the block sweeps
  the tile in passes (an outer `local`).
* `flat`: the row-major tile cut into runs of `vec` elements dealt to the threads in
  turn (run q to thread q % threads): coalesced, and the default mapping of tiles
  nothing else constrains.
* `mma_tiling` / `mma_fragments`: an mma.sync.m16n8k16 gemm splits the
  accumulator over a (wm x wn) grid of warps; each warp repeats the 16x8
  atom over its warp tile. A warp needs the A rows of its grid row and the B
  columns of its grid column, so a register A operand is replicated across
  the wn warps of a row (and B across the wm warps of a column).
* `ldmatrix_lanes`: the shared-memory rows each lane addresses when a warp
  loads its A or B fragments with ldmatrix (the addresses the bank-conflict
  model judges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import tv
from .atoms import MMA_M16N8K16_A, MMA_M16N8K16_B, MMA_M16N8K16_C
from .task_mapping import TaskMapping, local, replicate, spatial

WARP = 32


def coalesced(shape: tuple[int, ...], elem_bytes: int, threads: int, max_bytes: int = 16) -> TaskMapping:
    """Vectors of up to `max_bytes` along the last axis, threads fastest along it, passes outermost.

    The vector shrinks so that every thread gets work when the tile is small; threads
    left over when the tile cannot use them all hold replicas (outermost)."""
    numel = math.prod(shape)
    vec = 1
    while (2 * vec * elem_bytes <= max_bytes and shape[-1] % (2 * vec) == 0 and 2 * vec * threads <= numel):
        vec *= 2
    rest = list(shape)
    rest[-1] //= vec
    spread = [1] * len(shape)
    left = threads
    for d in reversed(range(len(shape))):
        spread[d] = math.gcd(rest[d], left)
        left //= spread[d]
    reps = [r // s for r, s in zip(rest, spread)]
    vec_shape = [1] * (len(shape) - 1) + [vec]
    return tv.canonical(replicate(left) * local(*reps) * spatial(*spread) * local(*vec_shape))


def flat(shape: tuple[int, ...], threads: int, vec: int = 1) -> TaskMapping | None:
    """Runs of `vec` consecutive elements along the last axis, dealt to the threads in turn: run q
    (row-major) goes to thread q % threads, as value run q // threads. A tile with fewer runs than
    threads leaves the last threads without elements. None where the runs do not split into whole
    passes over the threads (the mapping is not a product of atoms: use `coalesced`)."""
    if shape[-1] % vec:
        return None
    runs = list(shape[:-1]) + [shape[-1] // vec]
    total = math.prod(runs)
    if total <= threads:
        return tv.canonical(spatial(*runs) * local(*([1] * (len(shape) - 1) + [vec])))
    if total % threads:
        return None
    spread, left = [1] * len(runs), threads  # the innermost run axes that hold `threads` runs
    for d in reversed(range(len(runs))):
        spread[d] = math.gcd(runs[d], left)
        left //= spread[d]
        if spread[d] < runs[d]:
            break
    if left != 1:
        return None
    passes = [r // s for r, s in zip(runs, spread)]
    return tv.canonical(local(*passes) * spatial(*spread) * local(*([1] * (len(shape) - 1) + [vec])))


def default_vector(shape: tuple[int, ...], threads: int, max_vec: int = 8) -> int:
    """The run length of a tile's default (flat) mapping: up to `max_vec` elements along the last axis,
    as long as every thread still gets a run. 8 makes 16-byte accesses of 16-bit elements; packed
    sub-byte sources ask for longer runs (whole 16-byte loads of their fields)."""
    numel = math.prod(shape)
    vec = max_vec
    while vec > 1 and (shape[-1] % vec or numel < threads * vec):
        vec //= 2
    return vec


@dataclass(frozen=True)
class MmaTiling:
    """How every warp of a block tiles an m x n accumulator with m16n8 mma fragments: a
    `wm` x `wn` warp grid, each warp holding `mi` x `ni` fragments. With `wk` > 1 the block
    has wk such grids, each summing its own 1/wk of the k extent ("k split"): their partial
    accumulators are added together before the accumulator is read."""

    m: int
    n: int
    wm: int
    wn: int
    wk: int = 1

    @property
    def mi(self) -> int:  # m16 fragments per warp
        return self.m // (16 * self.wm)

    @property
    def ni(self) -> int:  # n8 fragments per warp
        return self.n // (8 * self.wn)


def mma_tiling(m: int, n: int, threads: int, k: int | None = None, spread_a: bool = True,
               spread_b: bool = True) -> MmaTiling | None:
    """The warp grid using all of the block's warps with the fewest ldmatrix.x4 loads per k-step
    (one per A fragment, one per pair of B fragments), fewest grid rows on a tie; None if m16n8
    fragments cannot tile m x n over them.

    Given `k`, an accumulator too small for the warps may split k instead: the fewest k groups
    (wk) whose grids use every warp, each group taking whole k16 steps. `spread_a` False keeps A
    on one warp column (wn = 1: an A held in registers is not loaded twice), `spread_b` False B
    on one warp row."""
    if threads % WARP:
        return None
    warps = threads // WARP
    for wk in range(1, warps + 1):
        if warps % wk or (wk > 1 and (k is None or k % (16 * wk))):
            continue
        best = None
        for wm in range(1, warps // wk + 1):
            wn = warps // wk // wm
            if (warps // wk) % wm or m % (16 * wm) or n % (8 * wn) or (wn > 1 and not spread_a) \
                    or (wm > 1 and not spread_b):
                continue
            t = MmaTiling(m, n, wm, wn, wk)
            cost = t.mi + -(-t.ni // 2)
            if best is None or cost < best[0]:
                best = (cost, t)
        if best is not None:
            return best[1]
    return None


def mma_shape_ok(m: int, n: int, k: int) -> bool:
    return m % 16 == 0 and n % 8 == 0 and k % 16 == 0


@dataclass(frozen=True)
class Fragments:
    """Task mappings of a gemm's operands in their tiles' orientation (A is [K, M] when trans_a)."""

    a: TaskMapping
    b: TaskMapping
    c: TaskMapping


@lru_cache(maxsize=512)
def mma_fragments(t: MmaTiling, k: int, trans_a: bool, trans_b: bool) -> Fragments:
    """The mma.sync fragments of tiling `t` (with k-extent `k`) as task mappings. With a k split
    the k groups are the outermost warps: each holds its k range of A and B, and a (partial) copy
    of the accumulator."""
    ks = k // (16 * t.wk)  # k16 steps per k group
    c = replicate(t.wk) * spatial(t.wm, t.wn) * local(t.mi, t.ni) * MMA_M16N8K16_C
    a = spatial(1, t.wk) * spatial(t.wm, 1) * replicate(t.wn) * local(t.mi, ks) * MMA_M16N8K16_A
    b = spatial(t.wk, 1) * replicate(t.wm) * spatial(1, t.wn) * local(ks, t.ni) * MMA_M16N8K16_B
    a, b, c = (tv.canonical(x) for x in (a, b, c))
    return Fragments(tv.transpose(a) if trans_a else a, tv.transpose(b) if trans_b else b, c)


@lru_cache(maxsize=512)
def ldmatrix_lanes(role: str, m: int, n: int, k: int, grid: MmaTiling, trans_tile: bool,
                   along_y: bool) -> tuple[str, np.ndarray]:
    """The ldmatrix instruction and, per instruction of every warp, each lane's first element.

    `role` "A" (operand [m, k]) or "B" ([k, n]); `trans_tile` whether the tile stores the
    operand transposed; `along_y` whether shared memory is contiguous along k (plain
    ldmatrix) rather than along m / n (ldmatrix.trans). Returns (name, [instrs, 32, 2]
    tile coordinates, -1 for lanes that supply no address)."""
    warp_x = (m // grid.wm) if role == "A" else (n // grid.wn)
    x_step = 16 if role == "A" or warp_x % 16 == 0 else 8
    num = 4 if x_step == 16 else 2
    instrs = []
    for w in range(grid.wm * grid.wn):
        wi = (w // grid.wn) % grid.wm if role == "A" else w % grid.wn
        for xb in range(wi * warp_x, (wi + 1) * warp_x, x_step):
            for kb in range(0, k, 16):
                lanes = np.full((WARP, 2), -1, dtype=np.int64)
                for lane in range(8 * num):
                    i, j = divmod(lane, 8)
                    if role == "A":
                        x0, y0 = xb + 8 * (i % 2), kb + 8 * (i // 2)
                    elif num == 4:
                        x0, y0 = xb + 8 * (i // 2), kb + 8 * (i % 2)
                    else:
                        x0, y0 = xb, kb + 8 * i
                    x, y = (x0 + j, y0) if along_y else (x0, y0 + j)
                    # operand (X, Y) = A (m, k) / B (n, k); tiles store A as [m, k] and B as [k, n]
                    natural = (x, y) if role == "A" else (y, x)
                    lanes[lane] = natural[::-1] if trans_tile else natural
                instrs.append(lanes)
    name = f"ldmatrix.x{num}" + ("" if along_y else ".trans")
    return name, np.stack(instrs)


def y_axis(role: str, trans_tile: bool) -> int:
    """The tile axis that holds k for an operand (the axis plain ldmatrix reads along)."""
    natural = 1 if role == "A" else 0
    return 1 - natural if trans_tile else natural
