"""A shared tile's layout, as the layout plan chose it, realized as a TIR buffer and its indices.

The layout itself (strides, swizzle, column blocks) is the plan's `SharedLayout`: element (r, c)
of the tile (leading axes flattened into rows) is at offset `layout(r, c)`.  TVM's buffer
compaction shrinks a buffer to the region its indices touch and sees buffer indices, not flat
offsets, so each layout is realized in the simplest buffer that keeps the plan's order:

* row-major: the tile's own shape, indexed by its own coordinates;
* padded rows (`padded(p)`): a [rows, cols + p] buffer indexed [r, c]; TVM's compaction may
  drop the padding again (the element order stays the plan's, the bank spread may not);
* column-major: the buffer transposed, [cols, rows] indexed [c, r];
* a swizzle that permutes 16-byte chunks within a row (the standard swizzles of ldmatrix
  operands): the same 2-d buffer, the contiguous index XOR-ed with bits of the row;
* any other layout (a swizzle across rows, column blocks): the plan's flat offset `off`
  itself, at [off // cols, off % cols].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...layout.shared import SharedLayout
from ...layout.swizzle import Swizzle
from ..text import paren


@dataclass(frozen=True)
class SharedBuffer:
    layout: SharedLayout
    shape: tuple[int, ...]  # the tile's

    @property
    def natural(self) -> bool:
        """Whether the layout is row-major: the buffer is the tile itself."""
        lay = self.layout
        return lay.swizzle is None and not lay.block and lay.col_stride == 1 and lay.row_stride == lay.cols

    @property
    def _major(self) -> tuple[int, int, bool] | None:
        """(stride of the outer axis, its extent, whether the columns are the inner axis) of a layout
        with a unit-stride axis and no column blocks; None otherwise."""
        lay = self.layout
        if lay.block:
            return None
        if lay.col_stride == 1:
            return lay.row_stride, lay.rows, True
        if lay.row_stride == 1:
            return lay.col_stride, lay.cols, False
        return None

    @property
    def dims(self) -> tuple[int, ...]:
        """The buffer's shape."""
        if self.natural:
            return self.shape
        major = self._major
        if major is not None:
            width, outer, _ = major
            return outer, width
        cols = self.layout.cols
        return -(-self.layout.cosize // cols), cols

    def index(self, coords: tuple[str, ...]) -> tuple[str, ...]:
        """The buffer index of the tile element at `coords` (one index expression per tile axis)."""
        if self.natural:
            return tuple(coords)
        lay = self.layout
        sw = lay.swizzle if lay.swizzle is not None and lay.swizzle.bits else None
        row = _row(coords, self.shape)
        col = coords[-1]
        major = self._major
        if major is not None:
            width, _, columns_inner = major
            outer, inner = (row, col) if columns_inner else (col, row)
            if sw is None:
                return outer, inner
            if within_row(sw, width):
                return outer, f"T.bitwise_xor({inner}, {_xor_term(sw, outer, inner, width)})"
        off = _linear(lay, row, col)
        if sw is not None:
            off = f"T.bitwise_xor({off}, {_xor_term(sw, None, off, 0)})"
        return f"{paren(off)} // {lay.cols}", f"{paren(off)} % {lay.cols}"


def within_row(sw: Swizzle, width: int) -> bool:
    """Whether the bits a swizzle rewrites lie inside one buffer row of `width` elements."""
    return width % (1 << (_bits(sw)[1] + sw.bits)) == 0


def _bits(sw: Swizzle) -> tuple[int, int]:
    """(first bit read, first bit written) of a swizzle."""
    return sw.base + max(sw.shift, 0), sw.base - min(sw.shift, 0)


def _xor_term(sw: Swizzle, outer: str | None, inner: str, width: int) -> str:
    """What a swizzle XORs into the offset `outer * width + inner` (`outer` None: `inner` is the
    whole offset): the bits read, moved to the bits written.  Where the bits read lie above a
    power-of-two row, they are bits of the row alone."""
    read, write = _bits(sw)
    lw = width.bit_length() - 1
    if outer is not None and width == 1 << lw and read >= lw:
        src, shift = paren(outer), read - lw
    else:
        src = paren(inner) if outer is None else f"({paren(outer)} * {width} + {inner})"
        shift = read
    field = src if shift == 0 else f"{src} // {1 << shift}"
    return f"{field} % {1 << sw.bits} * {1 << write}"


def _row(coords: tuple[str, ...], shape: tuple[int, ...]) -> str:
    """The row of a tile element: its leading coordinates flattened."""
    terms = []
    for i, (c, s) in enumerate(zip(coords[:-1], shape[:-1])):
        if s > 1:
            stride = math.prod(shape[i + 1:-1])
            terms.append(c if stride == 1 else f"{paren(c)} * {stride}")
    return " + ".join(terms) or "0"


def _linear(lay: SharedLayout, row: str, col: str) -> str:
    """The offset before the swizzle (`SharedLayout.linear`), as an expression."""
    terms = [] if row == "0" else [f"{paren(row)} * {lay.row_stride}"]
    if lay.block:
        terms += [f"{paren(col)} % {lay.block}", f"{paren(col)} // {lay.block} * {lay.block_stride}"]
    else:
        terms.append(col if lay.col_stride == 1 else f"{paren(col)} * {lay.col_stride}")
    return " + ".join(terms)
