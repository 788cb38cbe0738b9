"""Which thread of the block holds which element of a register tile, as C++ expressions.

A register tile is a per-thread array of `values` registers.  The layout plan gives every
register tile its task mapping; `realize` picks how to print it.  A mapping turns (thread
index, value index) into the element's tile coordinate plus a guard that is false for
registers holding nothing (tiles smaller than the thread count).  Elementwise code runs over
the values of the result's mapping; an operand held under another mapping is read from a
shared-memory copy instead.

* `Flat`: the plan's flat mapping (`tilelang.layout.tiling.flat`: the row-major tile cut
  into runs of `vec` elements dealt to threads in turn, run q to thread q % threads),
  printed with one flat index.
* `Tasked`: any other `tilelang.layout.TaskMapping` (spatial/local atoms), e.g. the
  mma.m16n8k16 accumulator fragment tiled over warps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...layout import tv
from ...layout.task_mapping import TaskMapping
from ...layout.tiling import flat
from . import cexpr as cx


@dataclass(frozen=True)
class Flat:
    shape: tuple[int, ...]
    threads: int
    vec: int = 1

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def values(self) -> int:
        return -(-self.numel // (self.threads * self.vec)) * self.vec

    @property
    def run(self) -> int:
        """Values j*run .. j*run+run-1 hold consecutive elements along the last axis."""
        return self.vec

    def flat_index(self, tid: str, v: str) -> str:
        if self.vec == 1:
            return cx.add(cx.mul(v, self.threads), tid)
        chunk = cx.add(cx.mul(cx.div(v, self.vec), self.threads), tid)
        return cx.add(cx.mul(chunk, self.vec), cx.mod(v, self.vec))

    def coords(self, tid: str, v: str) -> tuple[list[str], str | None]:
        e = self.flat_index(tid, v)
        guard = None if self.numel % (self.threads * self.vec) == 0 else f"{cx.paren(e)} < {self.numel}"
        return cx.unravel(e, self.shape), guard

    def describe(self) -> str:
        return f"flat, runs of {self.vec} per thread" if self.vec > 1 else "flat"


@dataclass(frozen=True)
class Tasked:
    task: TaskMapping
    threads: int
    label: str = field(default="", compare=False)  # a description: mappings compare as functions

    @property
    def shape(self) -> tuple[int, ...]:
        return self.task.shape

    @property
    def values(self) -> int:
        return self.task.values_per_thread

    @property
    def run(self) -> int:
        inner = self.task.atoms[-1]
        if inner.kind != "local":
            return 1
        for extent, dim in inner.digits():
            if extent > 1:
                return extent if dim == len(inner.shape) - 1 else 1
        return 1

    def coords(self, tid: str, v: str) -> tuple[list[str], str | None]:
        coord = []
        for axis_terms in tv.terms(self.task):
            c = "0"
            for t in axis_terms:
                c = cx.add(c, cx.mul(cx.mod(cx.div(tid if t.source == "thread" else v, t.divisor), t.extent), t.scale))
            coord.append(c)
        guard = None if self.task.num_threads == self.threads else f"{tid} < {self.task.num_threads}"
        return coord, guard

    def describe(self) -> str:
        return self.label or repr(self.task)


Mapping = Flat | Tasked


def squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without leading 1s: [1, N] and [N] hold the same elements in the same order."""
    i = 0
    while i < len(shape) - 1 and shape[i] == 1:
        i += 1
    return tuple(shape[i:])


def equivalent(a: Mapping, b: Mapping) -> bool:
    """Whether every thread holds the same elements, in the same registers, under both mappings."""
    if isinstance(a, Flat) and isinstance(b, Flat):
        return a.threads == b.threads and a.vec == b.vec and squeeze(a.shape) == squeeze(b.shape)
    return a == b


def realize(task: TaskMapping, threads: int, label: str = "") -> Mapping:
    """How to print the plan's mapping of a tile: `Flat` where it is the flat mapping, else `Tasked`."""
    vec = tv.vector_run(task, -1)
    if flat(task.shape, threads, vec) == task:
        return Flat(task.shape, threads, vec)
    return Tasked(task, threads, label)
