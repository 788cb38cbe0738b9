"""Shared-memory layouts of a tile: where element (row, col) is stored.

A shared tile is seen as (rows, cols): leading axes flattened into rows, the last axis the
contiguous one. Offsets are in elements from the start of the tile's buffer. The families
trade storage against bank conflicts: row/col-major are compact but rows of a power-of-two
width all start in the same bank; padding shifts each row by `pad` elements at the cost of
extra storage; swizzling permutes 16-byte chunks within each row at no storage cost.

Hopper's wgmma reads its operands through matrix descriptors, which can only describe the
canonical GMMA layouts: rows of 32, 64 or 128 bytes swizzled with the matching
`standard_swizzle`; a tile whose rows are longer is cut along its columns into `block`s of
128-byte rows stored one after another (`smem_gmma`).

One type serves every consumer: the layout pass (bank-conflict costs, `tilelang show`),
the CUDA backend (C++ offset expressions, wgmma descriptors, TMA boxes) and the TVM lowering
all read the same `SharedLayout` fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

from .algebra import Layout
from .errors import LayoutError
from .swizzle import ComposedLayout, Swizzle

CHUNK_BYTES = 16  # a swizzle moves whole 16-byte vectors, the widest shared access
LINE_BYTES = 128  # 32 banks x 4 bytes: one conflict-free wavefront
GMMA_WIDTHS = (128, 64, 32)  # row bytes of the canonical wgmma swizzle atoms (8 rows each)


@dataclass(frozen=True)
class SharedLayout:
    """A (rows, cols) tile of `elem_bytes`-byte elements placed in shared memory.

    Element (r, c) is at `swizzle(r * row_stride + c * col_stride)`, or, with `block` > 0,
    at `swizzle(r * row_stride + (c % block) * col_stride + (c // block) * rows * block)`:
    the columns cut into dense `rows x block` sub-tiles stored one after another.
    `cosize` is the number of elements to allocate, padding included.
    """

    rows: int
    cols: int
    elem_bytes: int
    row_stride: int
    col_stride: int
    scheme: str = field(compare=False)  # a description; layouts compare as functions
    swizzle: Optional[Swizzle] = None
    block: int = 0

    @property
    def cosize(self) -> int:
        if self.block:
            return self.rows * self.cols
        return 1 + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride

    @property
    def block_stride(self) -> int:
        """Elements between the starts of consecutive column blocks."""
        return self.rows * self.block

    @property
    def layout(self) -> Union[Layout, ComposedLayout]:
        """The same function in the layout algebra: (row, col) -> offset."""
        if self.block:
            inner = Layout((self.rows, (self.block, self.cols // self.block)),
                           (self.row_stride, (self.col_stride, self.block_stride)))
        else:
            inner = Layout((self.rows, self.cols), (self.row_stride, self.col_stride))
        return inner if self.swizzle is None else ComposedLayout(self.swizzle, inner)

    def linear(self, row: int, col: int) -> int:
        """The element offset of (row, col) before the swizzle."""
        if self.block:
            return row * self.row_stride + (col % self.block) * self.col_stride + (col // self.block) * self.block_stride
        return row * self.row_stride + col * self.col_stride

    def __call__(self, row: int, col: int) -> int:
        off = self.linear(row, col)
        return off if self.swizzle is None else self.swizzle(off)

    def offsets(self, rows, cols):
        """The offsets of numpy arrays of rows and columns, elementwise (any integer coordinates)."""
        off = self.linear(rows, cols)
        sw = self.swizzle
        if sw is None:
            return off
        yyy = off & sw.yyy_mask
        return off ^ (yyy >> sw.shift if sw.shift >= 0 else yyy << -sw.shift)

    def byte_address(self, row: int, col: int) -> int:
        return self(row, col) * self.elem_bytes

    def contiguous_run(self, n: int) -> bool:
        """Whether n consecutive elements of a row, starting at a multiple of n, are adjacent in memory
        (what an n-element vector access, or ldmatrix for n = 8 halfs, needs)."""
        if self.col_stride != 1 or self.cols % n or self.row_stride % n:
            return False
        if self.block and self.block % n:
            return False
        return self.swizzle is None or (1 << self.swizzle.base) % n == 0

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
    return SharedLayout(rows, cols, elem_bytes, cols, 1, "row-major")


def smem_col_major(rows: int, cols: int, elem_bytes: int = 2) -> SharedLayout:
    _check(rows, cols, elem_bytes)
    return SharedLayout(rows, cols, elem_bytes, 1, rows, "column-major")


def smem_padded(rows: int, cols: int, pad: int, elem_bytes: int = 2) -> SharedLayout:
    """Row-major with `pad` unused elements after each row (row stride ``cols + pad``)."""
    _check(rows, cols, elem_bytes)
    if pad < 0:
        raise LayoutError(f"padding must be non-negative, got {pad}")
    stride = cols + pad
    return SharedLayout(rows, cols, elem_bytes, stride, 1,
                        f"row-major padded by {pad} elements per row (row stride {stride})")


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


def smem_swizzled(rows: int, cols: int, elem_bytes: int = 2, swizzle: Optional[Swizzle] = None) -> SharedLayout:
    """Row-major with an XOR swizzle of the element offset: `standard_swizzle` unless one is given.

    The standard swizzle only permutes 16-byte chunks within a row, so storage stays
    ``rows * cols`` and 16-byte vectors stay contiguous.
    """
    _check(rows, cols, elem_bytes)
    if swizzle is None:
        swizzle = standard_swizzle(cols, elem_bytes)
        width = CHUNK_BYTES << swizzle.bits
        scheme = f"{width}B swizzle (16-byte chunk index XOR-ed with the low bits of the 128-byte line index)"
    else:
        scheme = f"row-major, offsets swizzled by {swizzle}"
    return SharedLayout(rows, cols, elem_bytes, cols, 1, scheme, swizzle)


def smem_gmma(rows: int, cols: int, elem_bytes: int) -> Optional[SharedLayout]:
    """The canonical wgmma layout of a (rows, cols) tile contiguous along its columns, or None.

    Rows of the widest swizzle atom that fits (128, 64 or 32 bytes, `standard_swizzle` of such a
    row); longer rows are cut into 128-byte column blocks. 8-row groups, so every atom starts on
    a multiple of its swizzle period."""
    if rows % 8:
        return None
    width = next((w for w in GMMA_WIDTHS if cols * elem_bytes % w == 0), None)
    if width is None:
        return None
    block = width // elem_bytes
    sw = standard_swizzle(block, elem_bytes)
    blocked = f", {cols // block} column blocks of {block}" if block < cols else ""
    return SharedLayout(rows, cols, elem_bytes, block, 1, f"wgmma canonical {width}B swizzle {sw}{blocked}", sw,
                        block if block < cols else 0)


def shared_dims(shape: tuple[int, ...]) -> tuple[int, int]:
    """A shared tile as (rows, cols): leading axes flattened into rows, the last axis contiguous."""
    return (math.prod(shape[:-1]), shape[-1])


def flat_coord(shape: tuple[int, ...], coord: tuple[int, ...]) -> tuple[int, int]:
    """The (row, col) of an n-d tile coordinate (leading axes flattened into rows)."""
    row = 0
    for c, s in zip(coord[:-1], shape[:-1]):
        row = row * s + c
    return row, coord[-1]
