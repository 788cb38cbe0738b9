"""Which thread visits which element of a tile, as TIR expressions (the cuda lowering's slots).

A register tile's task mapping is the layout plan's (`plan.mapping(name)`): a thread holds the
tile in a local array, slot v of thread tx holding the mapping's value v, at the coordinates
`tilelang.layout.tv.terms` gives (printed here in TVMScript), for threads below the mapping's
own count (`Slots.guard`: a mapping may use fewer threads than the block).  Statements in
which no register tile takes part (shared <-> global copies, shared initializations) *sweep*
the tile instead, as the plan says they do: row-major element q is visited by thread
q % threads, in slot q // threads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...layout import tv
from ...layout.task_mapping import TaskMapping

MAX_UNROLL = 64  # slots per thread unrolled (kept in registers); more go to local memory


@dataclass(frozen=True)
class Slots:
    """Slot v (0 <= v < count) of thread tx visits element `coords`, where `guard` holds (always if
    empty); `loop` is how the slots are iterated ("unroll" or "serial")."""

    count: int
    guard: str
    coords: tuple[str, ...]
    loop: str = "unroll"

    def same_elements(self, other: Slots) -> bool:
        """Whether slot v of every thread visits the same element under both (so a register holds it)."""
        return (self.coords, self.count, self.guard) == (other.coords, other.count, other.guard)


def held(m: TaskMapping, threads: int, registers: bool = False) -> Slots:
    """The slots of a register tile held in mapping `m` by a block of `threads`; `registers`: keep
    them unrolled however many there are (mma fragments)."""
    coords = tuple(_axis(axis_terms, m) for axis_terms in tv.terms(m))
    guard = f"tx < {m.num_threads}" if m.num_threads < threads else ""
    n = m.values_per_thread
    return Slots(n, guard, coords, "unroll" if registers or n <= MAX_UNROLL else "serial")


def _axis(terms: tuple[tv.Term, ...], m: TaskMapping) -> str:
    """One coordinate, outermost digit first; the outermost digit of an index needs no modulo."""
    parts = []
    for t in reversed(terms):
        src, total = ("tx", m.num_threads) if t.source == "thread" else ("v", m.values_per_thread)
        x = src if t.divisor == 1 else f"{src} // {t.divisor}"
        if t.divisor * t.extent < total:
            x = f"{x} % {t.extent}"
        parts.append(x if t.scale == 1 else f"{x} * {t.scale}")
    return " + ".join(parts) or "0"


def sweep(shape: tuple[int, ...], threads: int) -> Slots:
    """Row-major element q of a tile of `shape` visited by thread q % threads, in slot q // threads."""
    numel = math.prod(shape)
    n = -(-numel // threads)
    guard = f"v * {threads} + tx < {numel}" if numel % threads else ""
    return Slots(n, guard, unravel(f"(v * {threads} + tx)", shape), "unroll" if n <= MAX_UNROLL else "serial")


def unravel(linear: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """The row-major coordinates of element `linear` of a tile of `shape`."""
    live = [d for d, x in enumerate(shape) if x > 1]
    out = []
    for d, x in enumerate(shape):
        if x == 1:
            out.append("0")
            continue
        stride = math.prod(shape[d + 1:])
        c = linear if stride == 1 else f"{linear} // {stride}"
        out.append(c if d == live[0] else f"{c} % {x}")
    return tuple(out)


def fit(m: TaskMapping, shape: tuple[int, ...]) -> TaskMapping:
    """`m` over a tile of `shape` that differs from its own only by leading axes of extent 1."""
    lead = len(shape) - len(m.shape)
    return tv.pad_leading(m, lead) if lead > 0 else tv.drop_leading(m, -lead) if lead < 0 else m
