"""Where a shared tile's elements live in its buffer, as C++ offset expressions.

Strided layouts (row-major, column-major, rows padded by a few elements) and an XOR
swizzle on top of row-major (`tilelang.layout.swizzle.Swizzle`), which keeps each
16-byte chunk of a row contiguous so cp.async and ldmatrix move whole chunks.

Operands of Hopper's wgmma are read by the tensor cores through a matrix descriptor, which
can only describe the canonical GMMA layouts: rows of 32, 64 or 128 bytes swizzled with the
matching CuTe Swizzle<1|2|3, 4, 3> (in bytes).  `gmma` builds them; a tile whose rows are
longer than 128 bytes is cut along its columns into "blocks" of 128-byte rows stored one
after another (`SmemLayout.block`), each block a canonical atom stack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...diagnostics import TileError
from ...ir import nodes as N
from ...layout.errors import LayoutError
from ...layout.shared import standard_swizzle
from ...layout.swizzle import Swizzle
from . import cexpr as cx


@dataclass(frozen=True)
class SmemLayout:
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    swizzle: Swizzle | None = None
    scheme: str = "row-major"
    block: int = 0  # > 0: the last axis is cut into blocks of this many columns, each a dense sub-tile

    @property
    def cosize(self) -> int:
        """Elements of storage, padding included."""
        if self.block:
            return math.prod(self.shape)
        return 1 + sum((s - 1) * d for s, d in zip(self.shape, self.strides))

    @property
    def block_stride(self) -> int:
        """Elements between the starts of consecutive column blocks."""
        return math.prod(self.shape[:-1]) * self.block

    def offset(self, coords: list[str]) -> str:
        terms = [cx.mul(c, d) for c, d, s in zip(coords[:-1], self.strides, self.shape) if s > 1]
        last = coords[-1]
        if self.block and self.block < self.shape[-1]:
            terms += [cx.mod(last, self.block), cx.mul(cx.div(last, self.block), self.block_stride)]
        elif self.shape[-1] > 1:
            terms.append(cx.mul(last, self.strides[-1]))
        off = cx.add(*terms)
        sw = self.swizzle
        if sw is None or sw.bits == 0:
            return off
        o = cx.paren(off)
        mask = (1 << sw.bits) - 1
        return f"({o} ^ ((({o} >> {sw.base + sw.shift}) & {mask}) << {sw.base}))"

    def linear(self, coords: tuple[int, ...]) -> int:
        """The element offset of `coords` before the swizzle."""
        *lead, last = coords
        off = sum(c * d for c, d in zip(lead, self.strides))
        if self.block:
            return off + last % self.block + (last // self.block) * self.block_stride
        return off + last * self.strides[-1]

    def at(self, coords: tuple[int, ...]) -> int:
        """The element offset of `coords` (what `offset` computes in C++)."""
        off = self.linear(coords)
        return off if self.swizzle is None else self.swizzle(off)

    def contiguous_run(self, n: int) -> bool:
        """Whether n consecutive elements of a row, starting at a multiple of n, are adjacent in memory."""
        if self.strides[-1] != 1 or self.shape[-1] % n or any(d % n for d in self.strides[:-1]):
            return False
        if self.block and self.block % n:
            return False
        return self.swizzle is None or (1 << self.swizzle.base) % n == 0

    def describe(self) -> str:
        return self.scheme


def row_major(shape: tuple[int, ...]) -> SmemLayout:
    strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
    return SmemLayout(tuple(shape), strides)


GMMA_WIDTHS = (128, 64, 32)  # row bytes of the canonical wgmma swizzle atoms (8 rows each)


def gmma(shape: tuple[int, ...], elem_bytes: int) -> SmemLayout | None:
    """The canonical wgmma layout of a 2-D tile, contiguous along its last axis, or None.

    Rows of the widest swizzle atom that fits (128, 64 or 32 bytes, swizzled by XOR-ing the
    16-byte chunk index with the 128-byte line index: `standard_swizzle` of such a row);
    longer rows are cut into 128-byte column blocks.  8-row groups, so every atom starts on a
    multiple of its swizzle period."""
    if len(shape) != 2 or shape[0] % 8:
        return None
    rows, cols = shape
    width = next((w for w in GMMA_WIDTHS if cols * elem_bytes % w == 0), None)
    if width is None:
        return None
    block = width // elem_bytes
    sw = standard_swizzle(block, elem_bytes)
    blocked = f", {cols // block} column blocks of {block}" if block < cols else ""
    return SmemLayout(tuple(shape), (block, 1), sw, f"wgmma canonical {width}B swizzle {sw}{blocked}",
                      block if block < cols else 0)


def choose(shape: tuple[int, ...], elem_bytes: int, annotation: N.LayoutExpr | None, fed_to_mma: bool,
           fed_to_gmma: bool = False) -> SmemLayout:
    """The author's layout if given, else the canonical wgmma layout for wgmma operands, else a
    swizzle for mma operands of 16-bit types, else row-major."""
    if annotation is not None:
        return _annotated(shape, annotation)
    if fed_to_gmma:
        lay = gmma(shape, elem_bytes)
        if lay is not None:
            return lay
    if fed_to_mma and len(shape) == 2 and elem_bytes == 2:
        try:
            sw = standard_swizzle(shape[1], elem_bytes)
        except LayoutError:
            return row_major(shape)
        return SmemLayout(tuple(shape), row_major(shape).strides, sw, f"row-major, swizzled {sw}")
    return row_major(shape)


def _annotated(shape: tuple[int, ...], ann: N.LayoutExpr) -> SmemLayout:
    args = ann.args
    if ann.name == "row_major" and not args:
        return row_major(shape)
    if ann.name == "col_major" and not args:
        strides = tuple(math.prod(shape[:i]) for i in range(len(shape)))
        return SmemLayout(tuple(shape), strides, None, "column-major")
    if ann.name == "padded" and len(args) == 1 and isinstance(args[0], int) and args[0] >= 0:
        strides = list(row_major(shape).strides)
        row = shape[-1] + args[0]
        for i in range(len(shape) - 2, -1, -1):
            strides[i] = row
            row *= shape[i]
        return SmemLayout(tuple(shape), tuple(strides), None, f"row-major, rows padded by {args[0]}")
    if ann.name == "swizzle" and len(args) == 3 and all(isinstance(a, int) for a in args):
        try:
            sw = Swizzle(*args)
        except LayoutError as e:
            raise TileError(f"invalid swizzle: {e}", ann.loc) from None
        if math.prod(shape) % (1 << (sw.base + sw.bits + abs(sw.shift))):
            raise TileError(f"{sw} permutes blocks of {1 << (sw.base + sw.bits + abs(sw.shift))} elements; "
                            f"a tile of {math.prod(shape)} elements is not a whole number of them", ann.loc,
                            hint="use a smaller swizzle or padded(n)")
        return SmemLayout(tuple(shape), row_major(shape).strides, sw, f"row-major, swizzled {sw}")
    if ann.name in ("mma_a", "mma_b", "mma_c") or ann.name == "*" or ann.name in ("spatial", "local"):
        return row_major(shape)  # register-fragment layouts say nothing about a shared buffer
    raise TileError(f"the CUDA backend does not know shared layout '{ann}'", ann.loc,
                    hint="use row_major, col_major, padded(n) or swizzle(bits, base, shift)")
