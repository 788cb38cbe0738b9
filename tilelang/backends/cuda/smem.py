"""A shared tile's layout, as the layout plan chose it, printed as C++ offset expressions.

The layout itself (strides, swizzle, column blocks) is the plan's `SharedLayout`; this module
only knows the tile's n-d shape (the plan sees it as rows x cols, leading axes flattened) and
writes the offset of a coordinate the way the generated code computes it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...layout.shared import SharedLayout, flat_coord, smem_row_major
from . import cexpr as cx


@dataclass(frozen=True)
class Smem:
    layout: SharedLayout
    shape: tuple[int, ...]

    @property
    def cosize(self) -> int:
        """Elements of storage, padding included."""
        return self.layout.cosize

    @property
    def block(self) -> int:
        return self.layout.block

    @property
    def swizzle(self):
        return self.layout.swizzle

    @property
    def strides(self) -> tuple[int, ...]:
        """Per tile axis: the leading axes step whole rows, the last one columns."""
        lead = tuple(self.layout.row_stride * math.prod(self.shape[i + 1:-1]) for i in range(len(self.shape) - 1))
        return lead + (self.layout.col_stride,)

    @property
    def block_stride(self) -> int:
        return self.layout.block_stride

    def offset(self, coords: list[str]) -> str:
        strides = self.strides
        terms = [cx.mul(c, d) for c, d, s in zip(coords[:-1], strides, self.shape) if s > 1]
        last = coords[-1]
        if self.block and self.block < self.shape[-1]:
            terms += [cx.mod(last, self.block), cx.mul(cx.div(last, self.block), self.block_stride)]
        elif self.shape[-1] > 1:
            terms.append(cx.mul(last, strides[-1]))
        off = cx.add(*terms)
        sw = self.swizzle
        if sw is None or sw.bits == 0:
            return off
        o = cx.paren(off)
        mask = (1 << sw.bits) - 1
        return f"({o} ^ ((({o} >> {sw.base + sw.shift}) & {mask}) << {sw.base}))"

    def at(self, coords: tuple[int, ...]) -> int:
        """The element offset of `coords` (what `offset` computes in C++)."""
        return self.layout(*flat_coord(self.shape, coords))

    def contiguous_run(self, n: int) -> bool:
        return self.layout.contiguous_run(n)

    def describe(self) -> str:
        sw = self.swizzle
        return self.layout.scheme + (f", swizzled {sw}" if sw is not None and repr(sw) not in self.layout.scheme else "")


def row_major(shape: tuple[int, ...]) -> Smem:
    """Dense row-major scratch for staged register tiles."""
    return Smem(smem_row_major(math.prod(shape[:-1]), shape[-1], 1), tuple(shape))
