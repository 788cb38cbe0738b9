"""Shared-memory layouts of a 2-D tile: where element (row, col) is stored.

Offsets are in elements from the start of the tile's buffer. The families
trade storage against bank conflicts: row/col-major are compact but rows of
a power-of-two width all start in the same bank; padding shifts each row by
`pad` elements at the cost of extra storage; swizzling permutes 16-byte
chunks within each row at no storage cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .algebra import Layout, make_layout_row_major
from .errors import LayoutError
from .swizzle import ComposedLayout, Swizzle

CHUNK_BYTES = 16  # a swizzle moves whole 16-byte vectors, the widest shared access
LINE_BYTES = 128  # 32 banks x 4 bytes: one conflict-free wavefront


@dataclass(frozen=True)
class SharedLayout:
    """A (rows, cols) tile of `elem_bytes`-byte elements placed in shared memory.

    `layout` maps ``(row, col)`` to an element offset; `cosize` is the number
    of elements to allocate, padding included.
    """

    rows: int
    cols: int
    elem_bytes: int
    layout: Union[Layout, ComposedLayout]
    cosize: int
    scheme: str

    def __call__(self, row: int, col: int) -> int:
        return self.layout((row, col))

    def byte_address(self, row: int, col: int) -> int:
        return self(row, col) * self.elem_bytes

    def describe(self) -> str:
        return (
            f"{self.rows}x{self.cols} tile of {self.elem_bytes}-byte elements, {self.scheme}; "
            f"layout {self.layout}; {self.cosize} elements ({self.cosize * self.elem_bytes} bytes) of storage"
        )


def _check(rows: int, cols: int, elem_bytes: int) -> None:
    if rows < 1 or cols < 1:
        raise LayoutError(f"tile shape must be positive, got {rows}x{cols}")
    if elem_bytes not in (1, 2, 4, 8):
        raise LayoutError(f"element size must be 1, 2, 4 or 8 bytes, got {elem_bytes}")


def smem_row_major(rows: int, cols: int, elem_bytes: int = 2) -> SharedLayout:
    _check(rows, cols, elem_bytes)
    return SharedLayout(rows, cols, elem_bytes, make_layout_row_major((rows, cols)), rows * cols, "row-major")


def smem_col_major(rows: int, cols: int, elem_bytes: int = 2) -> SharedLayout:
    _check(rows, cols, elem_bytes)
    return SharedLayout(rows, cols, elem_bytes, Layout((rows, cols)), rows * cols, "column-major")


def smem_padded(rows: int, cols: int, pad: int, elem_bytes: int = 2) -> SharedLayout:
    """Row-major with `pad` unused elements after each row (row stride ``cols + pad``)."""
    _check(rows, cols, elem_bytes)
    if pad < 0:
        raise LayoutError(f"padding must be non-negative, got {pad}")
    stride = cols + pad
    return SharedLayout(
        rows,
        cols,
        elem_bytes,
        Layout((rows, cols), (stride, 1)),
        rows * stride,
        f"row-major padded by {pad} elements per row (row stride {stride})",
    )


def standard_swizzle(cols: int, elem_bytes: int = 2) -> Swizzle:
    """The 128B/64B/32B swizzle for a row-major tile with `cols` elements per row.

    Units are 16-byte chunks (``base = log2(16 / elem_bytes)``). A row of 32 or
    64 bytes uses ``bits = 1`` or ``2`` (CuTe's SW32/SW64); rows of 128 bytes or
    more use ``bits = 3`` (SW128). The XOR source is the index of the row's
    128-byte line, so the 8 rows (of 128 bytes or more) that one 16-byte column
    of chunks spans all land in distinct banks. For fp16: 64 halfs per row ->
    ``Sw<3,3,3>``, 32 -> ``Sw<2,3,3>``, 16 -> ``Sw<1,3,3>``, 128 -> ``Sw<3,3,4>``.
    """
    row_bytes = cols * elem_bytes
    if cols & (cols - 1) or row_bytes < 32 or elem_bytes > CHUNK_BYTES:
        raise LayoutError(
            f"no standard swizzle for rows of {cols} x {elem_bytes}-byte elements: the row must be a "
            "power-of-two number of elements spanning at least 32 bytes (use smem_padded instead)"
        )
    base = (CHUNK_BYTES // elem_bytes).bit_length() - 1
    bits = (min(row_bytes, LINE_BYTES) // CHUNK_BYTES).bit_length() - 1
    line_elems = max(row_bytes, LINE_BYTES) // elem_bytes
    return Swizzle(bits, base, line_elems.bit_length() - 1 - base)


def smem_swizzled(rows: int, cols: int, elem_bytes: int = 2) -> SharedLayout:
    """Row-major with `standard_swizzle` applied to the element offset.

    The swizzle only permutes 16-byte chunks within a row, so storage stays
    ``rows * cols`` and 16-byte vectors stay contiguous.
    """
    _check(rows, cols, elem_bytes)
    swizzle = standard_swizzle(cols, elem_bytes)
    width = CHUNK_BYTES << swizzle.bits
    return SharedLayout(
        rows,
        cols,
        elem_bytes,
        ComposedLayout(swizzle, make_layout_row_major((rows, cols))),
        rows * cols,
        f"{width}B swizzle (16-byte chunk index XOR-ed with the low bits of the 128-byte line index)",
    )
