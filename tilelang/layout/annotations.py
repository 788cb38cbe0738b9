"""Author layout annotations (`layout=` on `shared(...)` / `register(...)`) read as layouts, and back.

A shared tile takes a storage layout: `row_major`, `col_major`, `padded(n)`,
`swizzle(bits, base, shift)` (XOR-swizzled row-major), `gmma` (the canonical wgmma layout:
rows of up to 128 bytes swizzled, longer rows cut into 128-byte column blocks). A register tile takes a
task mapping, `spatial(...) * local(...)` compositions (also `column_spatial`,
`column_local`, `repeat`, `replicate`) over up to the block's threads (threads past the
mapping's hold none of the tile), or an mma fragment role `mma_a`,
`mma_b`, `mma_c` that the gemm using the tile tiles over warps. A mapping
smaller than the tile repeats over it (an outer `local`). Layout inference
writes every layout it chooses in this same form, so a plan's layouts can be
pasted back as annotations and reproduce the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnostics import TileError, did_you_mean
from ..ir.nodes import LayoutExpr
from ..ir.types import TileType
from . import tv
from .cost import offset_table
from .errors import LayoutError
from .shared import (SharedLayout, shared_dims, smem_col_major, smem_gmma, smem_padded, smem_row_major,
                     smem_swizzled, standard_swizzle)
from .swizzle import Swizzle
from .task_mapping import TaskMapping, column_local, column_spatial, local, replicate, spatial

SHARED_LAYOUTS = ("row_major", "col_major", "padded", "swizzle", "gmma")
FRAGMENTS = {"mma_a": "A", "mma_b": "B", "mma_c": "C"}
_MAPPING_ATOMS = {"spatial": spatial, "local": local, "repeat": local, "column_spatial": column_spatial,
                  "column_local": column_local, "replicate": replicate}
_ALL = ("row_major, col_major, padded(n), swizzle(bits, base, shift), gmma, mma_a, mma_b, mma_c, "
        "spatial(...) * local(...)")
_NAMES = (*SHARED_LAYOUTS, *FRAGMENTS, *_MAPPING_ATOMS)


@dataclass(frozen=True)
class Fragment:
    """A register tile that must hold an mma operand fragment (`role` "A", "B" or "C"),
    tiled over warps as the gemm that uses it chooses."""

    role: str


def elem_bytes(tile: TileType) -> int:
    return max(tile.dtype.bits, 8) // 8


def shared_layout(expr: LayoutExpr, tile: TileType) -> SharedLayout:
    """The storage layout `expr` names for `tile`; a TileError at the annotation if it cannot hold it."""
    rows, cols = shared_dims(tile.shape)
    nbytes = elem_bytes(tile)
    if expr.name in _MAPPING_ATOMS or expr.name in FRAGMENTS or expr.name == "*":
        raise TileError(f"`{expr}` is a register layout (a task mapping); shared tiles take a storage layout",
                        expr.loc, hint="use row_major, col_major, padded(n) or swizzle(bits, base, shift), "
                                       "or make the tile a register(...) tile")
    if expr.name not in SHARED_LAYOUTS:
        raise TileError(f"unknown layout `{expr}`", expr.loc, hint=did_you_mean(expr.name, _NAMES, f"layouts: {_ALL}"))
    args = _int_args(expr, {"row_major": 0, "col_major": 0, "padded": 1, "swizzle": 3, "gmma": 0}[expr.name])
    if expr.name == "gmma":
        out = smem_gmma(rows, cols, nbytes) if len(tile.shape) == 2 else None
        if out is None:
            raise TileError(f"`gmma` needs a 2-d tile of 8k rows whose rows are a multiple of 32 bytes; this one is "
                            f"{rows} x {cols} of {nbytes}-byte elements", expr.loc,
                            hint="use swizzle(...) or padded(n), or a tile shape such as 64 x 64")
        return out
    try:
        if expr.name == "row_major":
            return smem_row_major(rows, cols, nbytes)
        if expr.name == "col_major":
            return smem_col_major(rows, cols, nbytes)
        if expr.name == "padded":
            return smem_padded(rows, cols, args[0], nbytes)
        sw = Swizzle(*args)
    except LayoutError as e:
        raise TileError(f"layout `{expr}`: {e}", expr.loc) from None
    out = smem_swizzled(rows, cols, nbytes, None if _is_standard(sw, cols, nbytes) else sw)
    offs = offset_table(out)
    if sorted(offs.ravel().tolist()) != list(range(rows * cols)):
        raise TileError(f"`{expr}` does not permute the {rows} x {cols} offsets of this tile", expr.loc,
                        hint="a swizzle must act inside the tile: pick bits/base/shift whose XOR-ed fields lie "
                             "below log2(rows * cols), or use padded(n)")
    return out


def _is_standard(sw: Swizzle, cols: int, nbytes: int) -> bool:
    try:
        return standard_swizzle(cols, nbytes) == sw
    except LayoutError:
        return False


def register_layout(expr: LayoutExpr, tile: TileType, threads: int) -> TaskMapping | Fragment:
    """The task mapping (or fragment role) `expr` names for register `tile` in a block of `threads`."""
    if expr.name in FRAGMENTS:
        _int_args(expr, 0)
        return Fragment(FRAGMENTS[expr.name])
    if expr.name in SHARED_LAYOUTS:
        raise TileError(f"`{expr}` is a shared-memory layout; register tiles take task mappings", expr.loc,
                        hint="e.g. layout=spatial(16, 8) * local(4, 8), layout=mma_c, or make it a shared(...) tile")
    m = _mapping(expr)
    shape = tile.shape
    if len(m.shape) > len(shape):
        raise TileError(f"layout `{expr}` is {len(m.shape)}-d but the tile is {len(shape)}-d", expr.loc)
    m = tv.pad_leading(m, len(shape) - len(m.shape))
    if not m.is_valid_for(shape):
        raise TileError(f"layout `{expr}` covers {_dims(m.shape)}, which does not divide the tile's {_dims(shape)}",
                        expr.loc, hint="make each extent of the mapping divide the tile's")
    if m.num_threads > threads:
        raise TileError(f"layout `{expr}` spreads the tile over {m.num_threads} threads but the kernel runs "
                        f"{threads}", expr.loc,
                        hint=f"make the spatial (and replicate) factors multiply to at most {threads} "
                             f"(threads past them hold none of the tile)")
    reps = tuple(s // e for s, e in zip(shape, m.shape))
    return tv.canonical(local(*reps) * m)


def _mapping(expr: LayoutExpr) -> TaskMapping:
    if expr.name == "*":
        parts = [_mapping(a) if isinstance(a, LayoutExpr) else None for a in expr.args]
        if None in parts:
            raise TileError(f"cannot read layout `{expr}`", expr.loc)
        out = parts[0]
        for p in parts[1:]:
            out = out * p
        return out
    make = _MAPPING_ATOMS.get(expr.name)
    if make is None:
        raise TileError(f"unknown layout `{expr}`", expr.loc, hint=did_you_mean(expr.name, _NAMES, f"layouts: {_ALL}"))
    args = _int_args(expr, None)
    if not args or (expr.name == "replicate" and len(args) != 1):
        raise TileError(f"`{expr.name}` needs {'one thread count' if expr.name == 'replicate' else 'extents'}",
                        expr.loc, hint="e.g. spatial(16, 8) * local(4, 8), or replicate(4)")
    try:
        return make(*args)
    except LayoutError as e:
        raise TileError(f"layout `{expr}`: {e}", expr.loc) from None


def _int_args(expr: LayoutExpr, count: int | None) -> tuple[int, ...]:
    if any(not isinstance(a, int) for a in expr.args) or (count is not None and len(expr.args) != count):
        want = "no arguments" if count == 0 else f"{count} integer arguments" if count else "integer arguments"
        raise TileError(f"`{expr}`: `{expr.name}` takes {want}", expr.loc, hint=f"layouts: {_ALL}")
    return tuple(expr.args)


def _dims(shape) -> str:
    return " x ".join(map(str, shape))
