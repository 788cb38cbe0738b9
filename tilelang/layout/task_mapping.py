"""Task mappings: which thread holds which elements of a tile (thread-value layouts).

A task mapping sends ``(thread, value)`` -- thread index in ``[0, num_threads)``,
per-thread value (register) index in ``[0, values_per_thread)`` -- to a
coordinate of an n-d tile. It is built from atoms:

* ``spatial(*shape)``: one element per thread, threads in row-major order
  over `shape` (``column_spatial`` for column-major);
* ``local(*shape)`` (alias ``repeat``): all elements held by a single thread,
  values in row-major order (``column_local`` for column-major);
* ``replicate(n)``: n threads holding the same single element.

Composition ``outer * inner`` (the Hidet / Tilus convention) tiles `inner`
inside each element of `outer`:

* tile shape = ``outer.shape * inner.shape`` elementwise; coordinate
  = ``outer_coord * inner.shape + inner_coord``;
* thread = ``outer_thread * inner.num_threads + inner_thread``;
* value = ``outer_value * inner.values_per_thread + inner_value``.

So in ``local(2, 1) * spatial(8, 4) * local(1, 2)`` (the mma.m16n8k16 C
fragment) thread t holds row ``t // 4`` (+8 for the second half of its
values) and columns ``2 * (t % 4) + {0, 1}``. Operands of different rank are
aligned by prepending extent-1 dimensions to the shorter one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .algebra import Layout, coalesce, make_layout
from .errors import LayoutError
from .int_tuple import normalize

Coord = tuple[int, ...]


@dataclass(frozen=True)
class _Atom:
    """One factor of a task mapping: a `kind` of distribution over `shape`."""

    kind: str
    shape: tuple[int, ...]
    column_major: bool = False
    replicas: int = 1

    @property
    def threads(self) -> int:
        return {"spatial": math.prod(self.shape), "local": 1, "replicate": self.replicas}[self.kind]

    @property
    def values(self) -> int:
        return math.prod(self.shape) if self.kind == "local" else 1

    def _order(self) -> list[int]:
        """Dimensions from fastest to slowest varying."""
        dims = list(range(len(self.shape)))
        return dims if self.column_major else dims[::-1]

    def coord(self, thread: int, value: int) -> Coord:
        linear = {"spatial": thread, "local": value, "replicate": 0}[self.kind]
        coord = [0] * len(self.shape)
        for d in self._order():
            coord[d] = linear % self.shape[d]
            linear //= self.shape[d]
        return tuple(coord)

    def holders(self, coord: Coord) -> list[tuple[int, int]]:
        """The (thread, value) pairs within this atom that hold `coord`."""
        linear, scale = 0, 1
        for d in self._order():
            linear += coord[d] * scale
            scale *= self.shape[d]
        if self.kind == "spatial":
            return [(linear, 0)]
        if self.kind == "local":
            return [(0, linear)]
        return [(r, 0) for r in range(self.replicas)]

    def digits(self) -> list[tuple[int, int]]:
        """(extent, dimension) of each digit of its linear index, fastest first."""
        return [(self.shape[d], d) for d in self._order()]

    def padded(self, rank: int) -> _Atom:
        return _Atom(self.kind, (1,) * (rank - len(self.shape)) + self.shape, self.column_major, self.replicas)

    def __repr__(self) -> str:
        if self.kind == "replicate":
            return f"replicate({self.replicas})"
        prefix = "column_" if self.column_major else ""
        return f"{prefix}{self.kind}({', '.join(map(str, self.shape))})"


@dataclass(frozen=True)
class TaskMapping:
    """A thread-value layout over a tile, as a product of atoms (outermost first)."""

    atoms: tuple[_Atom, ...]

    @property
    def shape(self) -> Coord:
        rank = len(self.atoms[0].shape)
        return tuple(math.prod(a.shape[d] for a in self.atoms) for d in range(rank))

    @property
    def num_threads(self) -> int:
        return math.prod(a.threads for a in self.atoms)

    @property
    def values_per_thread(self) -> int:
        return math.prod(a.values for a in self.atoms)

    def __mul__(self, inner: TaskMapping) -> TaskMapping:
        rank = max(len(self.shape), len(inner.shape))
        return TaskMapping(tuple(a.padded(rank) for a in self.atoms + inner.atoms))

    def __call__(self, thread: int, value: int = 0) -> Coord:
        """The tile coordinate of `value` of `thread`."""
        if not 0 <= thread < self.num_threads:
            raise LayoutError(f"thread {thread} is out of range for {self!r} ({self.num_threads} threads)")
        if not 0 <= value < self.values_per_thread:
            raise LayoutError(
                f"value {value} is out of range for {self!r} ({self.values_per_thread} values per thread)"
            )
        parts = []
        for atom in reversed(self.atoms):
            parts.append(atom.coord(thread % atom.threads, value % atom.values))
            thread //= atom.threads
            value //= atom.values
        coord = [0] * len(self.shape)
        for atom, part in zip(self.atoms, reversed(parts)):
            coord = [c * s + p for c, s, p in zip(coord, atom.shape, part)]
        return tuple(coord)

    def values_of(self, thread: int) -> tuple[Coord, ...]:
        """The coordinates `thread` holds, indexed by value."""
        return tuple(self(thread, v) for v in range(self.values_per_thread))

    def thread_of(self, coord: Coord) -> tuple[tuple[int, int], ...]:
        """Every (thread, value) holding `coord`, sorted; several if replicated."""
        coord = tuple(normalize(coord, "tile coordinate"))
        shape = self.shape
        if len(coord) != len(shape) or not all(0 <= c < s for c, s in zip(coord, shape)):
            raise LayoutError(f"coordinate {coord} is outside the tile of shape {shape}")
        parts = []
        rest = list(coord)
        for atom in reversed(self.atoms):
            parts.append(atom.holders(tuple(r % s for r, s in zip(rest, atom.shape))))
            rest = [r // s for r, s in zip(rest, atom.shape)]
        holders = [(0, 0)]
        for atom, options in zip(self.atoms, reversed(parts)):
            holders = [(t * atom.threads + dt, v * atom.values + dv) for t, v in holders for dt, dv in options]
        return tuple(sorted(holders))

    def is_valid_for(self, shape: Coord) -> bool:
        """Whether repeating this mapping (an outer `local`) covers a tile of `shape` exactly."""
        shape = tuple(shape)
        return len(shape) == len(self.shape) and all(s % m == 0 for s, m in zip(shape, self.shape))

    def to_layout(self) -> Layout:
        """The CuTe TV layout ``(thread, value) -> column-major tile index``.

        Its value at ``(t, v)`` is the colexicographic index of ``self(t, v)``
        in the tile, so ``composition(tile_layout, mapping.to_layout())`` gives
        each (thread, value)'s offset for any algebra `Layout` of the tile.
        Every mapping built from atoms is representable; replication becomes a
        stride-0 thread mode.
        """
        shape = self.shape
        tile_stride = [math.prod(shape[:d]) for d in range(len(shape))]
        thread_modes: list[tuple[int, int]] = []
        value_modes: list[tuple[int, int]] = []
        inner_extent = [1] * len(shape)
        for atom in reversed(self.atoms):  # innermost atom gives the fastest digits
            if atom.kind == "replicate":
                thread_modes.append((atom.replicas, 0))
            else:
                target = thread_modes if atom.kind == "spatial" else value_modes
                target.extend((extent, inner_extent[d] * tile_stride[d]) for extent, d in atom.digits())
            inner_extent = [e * s for e, s in zip(inner_extent, atom.shape)]
        return make_layout(_layout_of(thread_modes), _layout_of(value_modes))

    def render(self) -> str:
        """The tile as text, each cell listing its holders as ``T{thread}V{value}``."""
        cells: dict[Coord, list[str]] = {}
        for t in range(self.num_threads):
            for v in range(self.values_per_thread):
                cells.setdefault(self(t, v), []).append(f"T{t}V{v}")
        text = {c: ",".join(h) for c, h in cells.items()}
        width = max(len(s) for s in text.values())
        shape = self.shape
        if len(shape) < 2:
            return " ".join(text[c].rjust(width) for c in itertools.product(*map(range, shape)))
        blocks = []
        for lead in itertools.product(*map(range, shape[:-2])):
            lines = [f"[{', '.join(map(str, lead))}, :, :]"] if lead else []
            for r in range(shape[-2]):
                lines.append(" ".join(text[lead + (r, c)].rjust(width) for c in range(shape[-1])))
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def __repr__(self) -> str:
        return " * ".join(map(repr, self.atoms))


def _layout_of(modes: list[tuple[int, int]]) -> Layout:
    modes = [m for m in modes if m[0] > 1]
    if not modes:
        return Layout(1, 0)
    return coalesce(Layout(tuple(s for s, _ in modes), tuple(d for _, d in modes)))


def _atom(kind: str, shape: tuple, column_major: bool = False) -> TaskMapping:
    dims = normalize(shape, f"{kind} shape")
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise LayoutError(f"{kind} shape must be positive ints, got {shape}")
    return TaskMapping((_Atom(kind, dims, column_major),))


def spatial(*shape: int) -> TaskMapping:
    """One element per thread; thread t takes the t-th coordinate in row-major order."""
    return _atom("spatial", shape)


def column_spatial(*shape: int) -> TaskMapping:
    """One element per thread; thread t takes the t-th coordinate in column-major order."""
    return _atom("spatial", shape, column_major=True)


def local(*shape: int) -> TaskMapping:
    """All elements in one thread; value v is the v-th coordinate in row-major order."""
    return _atom("local", shape)


repeat = local


def column_local(*shape: int) -> TaskMapping:
    """All elements in one thread; value v is the v-th coordinate in column-major order."""
    return _atom("local", shape, column_major=True)


def replicate(num_threads: int) -> TaskMapping:
    """`num_threads` threads all holding the same element (a rank-0 tile)."""
    if num_threads < 1:
        raise LayoutError(f"replicate needs at least one thread, got {num_threads}")
    return TaskMapping((_Atom("replicate", (), replicas=num_threads),))
