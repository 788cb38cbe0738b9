"""Where a shared tile's elements live in its buffer, as C++ offset expressions.

Strided layouts (row-major, column-major, rows padded by a few elements) and an XOR
swizzle on top of row-major (`tilelang.layout.swizzle.Swizzle`), which keeps each
16-byte chunk of a row contiguous so cp.async and ldmatrix move whole chunks.
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

    @property
    def cosize(self) -> int:
        """Elements of storage, padding included."""
        return 1 + sum((s - 1) * d for s, d in zip(self.shape, self.strides))

    def offset(self, coords: list[str]) -> str:
        terms = [cx.mul(c, d) for c, d, s in zip(coords, self.strides, self.shape) if s > 1]
        off = cx.add(*terms)
        sw = self.swizzle
        if sw is None or sw.bits == 0:
            return off
        o = cx.paren(off)
        mask = (1 << sw.bits) - 1
        return f"({o} ^ ((({o} >> {sw.base + sw.shift}) & {mask}) << {sw.base}))"

    def contiguous_run(self, n: int) -> bool:
        """Whether n consecutive elements of a row, starting at a multiple of n, are adjacent in memory."""
        if self.strides[-1] != 1 or self.shape[-1] % n or any(d % n for d in self.strides[:-1]):
            return False
        return self.swizzle is None or (1 << self.swizzle.base) % n == 0

    def describe(self) -> str:
        return self.scheme


def row_major(shape: tuple[int, ...]) -> SmemLayout:
    strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
    return SmemLayout(tuple(shape), strides)


def choose(shape: tuple[int, ...], elem_bytes: int, annotation: N.LayoutExpr | None, fed_to_mma: bool) -> SmemLayout:
    """The author's layout if given, else a swizzle for mma operands of 16-bit types, else row-major."""
    if annotation is not None:
        return _annotated(shape, annotation)
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
