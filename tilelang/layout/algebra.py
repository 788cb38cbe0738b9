"""CuTe-style layout algebra.

A `Layout` is a pair (shape, stride) of congruent IntTuples. It is a function
from coordinates to integer offsets: the offset of a coordinate is the dot
product of the coordinate with the stride. Coordinates may be given

* hierarchically, congruent to the shape: ``L((i, (j, k)))``;
* per mode with 1-D coordinates: ``L((i, jk))`` where ``jk`` indexes the
  nested mode ``(J, K)`` colexicographically (``j = jk % J``, ``k = jk // J``);
* as a single int, the colexicographic index over the whole shape: ``L(n)``.

Colexicographic ("column-major", leftmost fastest) is the CuTe convention and
the one every operation here uses: flat index ``n`` of shape ``(4, 2)`` is
the coordinate ``(n % 4, n // 4)``.

``composition(A, B)`` is ``A o B``: ``composition(A, B)(c) == A(B(c))``.

Strides are non-negative; the operations rely on sorting modes by stride.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import LayoutError
from .int_tuple import (
    IntTuple,
    congruent,
    depth,
    format_int_tuple,
    leaves,
    normalize,
    product,
    unflatten,
)

Tiler = Union["Layout", int, tuple[Union["Layout", int], ...]]


@dataclass(frozen=True)
class Layout:
    """A function from (hierarchical) coordinates to offsets: ``shape:stride``.

    ``stride=None`` means compact column-major (CuTe's default).
    """

    shape: IntTuple
    stride: IntTuple = None

    def __post_init__(self) -> None:
        shape = normalize(self.shape, "layout shape")
        stride = _col_major_strides(shape) if self.stride is None else normalize(self.stride, "layout stride")
        if not congruent(shape, stride):
            raise LayoutError(
                f"shape {format_int_tuple(shape)} and stride {format_int_tuple(stride)} "
                "must have the same nesting"
            )
        if any(s < 1 for s in leaves(shape)):
            raise LayoutError(f"shape {format_int_tuple(shape)} has an extent below 1")
        if any(d < 0 for d in leaves(stride)):
            raise LayoutError(
                f"stride {format_int_tuple(stride)} has a negative entry; only non-negative strides are supported"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "stride", stride)

    @property
    def size(self) -> int:
        """Number of coordinates in the domain."""
        return product(self.shape)

    @property
    def cosize(self) -> int:
        """One past the largest offset: the storage the layout spans."""
        return 1 + sum((s - 1) * d for s, d in _modes(self))

    @property
    def rank(self) -> int:
        """Number of top-level modes."""
        return 1 if isinstance(self.shape, int) else len(self.shape)

    @property
    def depth(self) -> int:
        return depth(self.shape)

    def __getitem__(self, mode: int) -> Layout:
        """The sub-layout of top-level mode `mode`."""
        if isinstance(self.shape, int):
            if mode not in (0, -1):
                raise LayoutError(f"layout {self} has a single mode; mode {mode} does not exist")
            return self
        return Layout(self.shape[mode], self.stride[mode])

    def __call__(self, *coord: IntTuple) -> int:
        """Offset of a coordinate; ``L(i, j)`` is shorthand for ``L((i, j))``."""
        c = coord[0] if len(coord) == 1 else coord
        return _crd2idx(normalize(c, "coordinate"), self.shape, self.stride)

    def __repr__(self) -> str:
        return f"{format_int_tuple(self.shape)}:{format_int_tuple(self.stride)}"


def _col_major_strides(shape: IntTuple) -> IntTuple:
    strides, running = [], 1
    for s in leaves(shape):
        strides.append(running)
        running *= s
    return unflatten(strides, shape)


def _modes(layout: Layout) -> list[tuple[int, int]]:
    """The flat (extent, stride) pairs of `layout`, fastest first."""
    return list(zip(leaves(layout.shape), leaves(layout.stride)))


def _from_modes(modes: list[tuple[int, int]]) -> Layout:
    if not modes:
        return Layout(1, 0)
    if len(modes) == 1:
        return Layout(*modes[0])
    return Layout(tuple(s for s, _ in modes), tuple(d for _, d in modes))


def _crd2idx(coord: IntTuple, shape: IntTuple, stride: IntTuple) -> int:
    if isinstance(coord, int):
        size = product(shape)
        if not 0 <= coord < size:
            raise LayoutError(f"coordinate {coord} is out of range for shape {format_int_tuple(shape)} (size {size})")
        offset = 0
        for s, d in zip(leaves(shape), leaves(stride)):
            offset += (coord % s) * d
            coord //= s
        return offset
    if isinstance(shape, int) or len(coord) != len(shape):
        raise LayoutError(f"coordinate {format_int_tuple(coord)} does not match shape {format_int_tuple(shape)}")
    return sum(_crd2idx(c, s, d) for c, s, d in zip(coord, shape, stride))


# --- construction ---------------------------------------------------------------


def make_layout(*layouts: Layout) -> Layout:
    """Concatenation: the layout whose modes are `layouts`."""
    return Layout(tuple(l.shape for l in layouts), tuple(l.stride for l in layouts))


def make_layout_col_major(shape: IntTuple) -> Layout:
    """Compact layout, leftmost index fastest: ``(4, 2) -> (4,2):(1,4)``."""
    return Layout(shape)


def make_layout_row_major(shape: IntTuple) -> Layout:
    """Compact layout, rightmost index fastest: ``(4, 2) -> (4,2):(2,1)``."""
    shape = normalize(shape, "layout shape")
    extents = list(leaves(shape))
    strides, running = [0] * len(extents), 1
    for i in reversed(range(len(extents))):
        strides[i] = running
        running *= extents[i]
    return Layout(shape, unflatten(strides, shape))


# --- simplification ---------------------------------------------------------------


def flatten(layout: Layout) -> Layout:
    """The same function over a depth-1 (or integral) shape."""
    return _from_modes(_modes(layout)) if layout.depth > 1 else layout


def coalesce(layout: Layout) -> Layout:
    """The fewest modes that give the same function of the flat index.

    Drops extent-1 modes and merges neighbours ``s0:d0, s1:d1`` where ``d1 == s0*d0``.
    """
    merged: list[tuple[int, int]] = []
    for s, d in _modes(layout):
        if s == 1:
            continue
        if merged and merged[-1][0] * merged[-1][1] == d:
            merged[-1] = (merged[-1][0] * s, merged[-1][1])
        else:
            merged.append((s, d))
    return _from_modes(merged)


# --- composition ----------------------------------------------------------------


def composition(a: Layout, b: Tiler) -> Layout:
    """``A o B``, so ``composition(A, B)(c) == A(B(c))``.

    The result has B's shape profile (each integral mode of B may be refined
    into a tuple). As in CuTe, A's last mode is extended without bound, so B
    may index past ``A.size``. `b` may be an int ``n`` (meaning ``n:1``) or a
    tuple of tilers applied mode-by-mode to A's top-level modes.

    Raises LayoutError when the result is not a layout: CuTe's stride and
    shape divisibility conditions, and -- stricter than CuTe, which assumes
    it -- when the offsets B's modes reach in A would carry into each other,
    so that ``A(B(c))`` is not the sum of per-mode offsets (this can happen
    when B is not injective).
    """
    if isinstance(b, tuple):
        if len(b) > a.rank:
            raise LayoutError(f"tiler {b} has more modes than layout {a} (rank {a.rank})")
        return make_layout(*(composition(a[i], t) for i, t in enumerate(b)), *(a[i] for i in range(len(b), a.rank)))
    if isinstance(b, int):
        b = Layout(b, 1)
    modes = _modes(coalesce(a))
    used = [0] * len(modes)  # the largest digit B's modes reach in each of A's modes, summed
    shapes, strides = [], []
    for extent, step in _modes(b):
        result = _compose_leaf(a, b, modes, extent, step, used)
        shapes.append(result.shape)
        strides.append(result.stride)
    for (s, _), reach in zip(modes[:-1], used[:-1]):
        if reach >= s:
            raise LayoutError(
                f"cannot compose {a} with {b}: B's modes together reach past extent {s} of A, "
                "so A(B(c)) is not a sum of per-mode offsets (is B injective?)"
            )
    return Layout(unflatten(shapes, b.shape), unflatten(strides, b.shape))


def _compose_leaf(
    a: Layout, b: Layout, modes: list[tuple[int, int]], extent: int, step: int, used: list[int]
) -> Layout:
    """``A o extent:step`` over A's coalesced `modes`: every `step`-th element, `extent` of them.

    Adds to `used[k]` the largest digit this leaf reaches in A's mode k.
    """
    if extent == 1 or step == 0:
        return Layout(extent, 0)
    # Keep every step-th element: divide `step` out of A's modes, left to right.
    # Entries: (A mode, extent or None if unbounded, stride, digit step, whether later modes may follow).
    strided: list[tuple[int, int | None, int, int, bool]] = []
    rest = step
    for k, (s, d) in enumerate(modes):
        if k == len(modes) - 1:
            strided.append((k, None, d * rest, rest, True))
        elif s % rest == 0:
            if s // rest > 1:
                strided.append((k, s // rest, d * rest, rest, True))
            rest = 1
            continue
        elif rest % s == 0:
            rest //= s
            continue
        elif rest < s:
            # Only the first ceil(s/rest) elements lie in this mode; the next
            # one would need a coordinate in two modes at once.
            strided.append((k, -(-s // rest), d * rest, rest, False))
        else:
            raise LayoutError(
                f"cannot compose {a} with {b}: stride {step} is not compatible with "
                f"extent {s} (stride divisibility condition)"
            )
        break
    # Keep the first `extent` elements of the strided layout.
    result: list[tuple[int, int]] = []
    rest = extent
    for k, s, d, digit_step, can_continue in strided:
        take = rest if s is None or rest <= s else s
        if take < rest and (not can_continue or rest % s != 0):
            raise LayoutError(
                f"cannot compose {a} with {b}: taking {extent} elements would split extent {s} "
                "unevenly (shape divisibility condition)"
            )
        result.append((take, d))
        used[k] += (take - 1) * digit_step
        rest //= take
        if rest == 1:
            break
    return _from_modes(result)


# --- complement and inverses --------------------------------------------------------


def complement(a: Layout, cotarget: int | None = None) -> Layout:
    """The layout that "fills the holes" of `a` up to `cotarget` (default ``a.cosize``).

    ``make_layout(a, complement(a, n))`` is injective and its image covers
    ``[0, n)``; the two images meet only at 0. Stride-0 modes of `a` are ignored.
    Raises LayoutError when `a` overlaps itself or its strides do not nest
    (e.g. ``(2,2):(1,3)`` has no complement).
    """
    target = a.cosize if cotarget is None else cotarget
    shapes, strides = [], []
    covered = 1
    for d, s in sorted((d, s) for s, d in _modes(a) if s > 1 and d > 0):
        if d < covered or d % covered != 0:
            raise LayoutError(
                f"layout {a} has no complement: stride {d} is not a multiple of the span {covered} "
                "of its faster modes"
            )
        shapes.append(d // covered)
        strides.append(covered)
        covered = s * d
    shapes.append(-(-target // covered))
    strides.append(covered)
    return coalesce(Layout(tuple(shapes), tuple(strides)))


def right_inverse(a: Layout) -> Layout:
    """The largest R with ``a(R(i)) == i`` for every i in ``[0, R.size)``.

    ``R(i)`` is a flat (colexicographic) index into `a`. R covers the
    contiguous prefix ``[0, R.size)`` of a's image.
    """
    colex = []
    running = 1
    for s, d in _modes(a):
        colex.append((d, s, running))
        running *= s
    shapes, strides = [], []
    reached = 1
    for d, s, position in sorted(m for m in colex if m[1] > 1 and m[0] > 0):
        if d != reached:
            break
        shapes.append(s)
        strides.append(position)
        reached = s * d
    return coalesce(Layout(tuple(shapes), tuple(strides))) if shapes else Layout(1, 0)


def left_inverse(a: Layout) -> Layout:
    """An L with ``L(a(i)) == i`` for every i in ``[0, a.size)``.

    Requires `a` to be injective, with a complement.
    """
    if any(s > 1 and d == 0 for s, d in _modes(a)):
        raise LayoutError(f"layout {a} is not injective (a stride-0 mode repeats offsets), so it has no left inverse")
    return right_inverse(make_layout(a, complement(a)))


# --- division and product ----------------------------------------------------------


def logical_divide(a: Layout, tiler: Tiler) -> Layout:
    """Splits `a` into (tile, rest): ``a o (tiler, complement(tiler, a.size))``.

    Mode 0 of the result enumerates one tile, mode 1 the tiles. A tuple tiler
    divides a's top-level modes one by one: the result's mode i is
    ``(tile_i, rest_i)``.
    """
    if isinstance(tiler, tuple):
        if len(tiler) > a.rank:
            raise LayoutError(f"tiler {tiler} has more modes than layout {a} (rank {a.rank})")
        return make_layout(
            *(logical_divide(a[i], t) for i, t in enumerate(tiler)), *(a[i] for i in range(len(tiler), a.rank))
        )
    if isinstance(tiler, int):
        tiler = Layout(tiler, 1)
    return composition(a, make_layout(tiler, complement(tiler, a.size)))


def zipped_divide(a: Layout, tiler: Tiler) -> Layout:
    """`logical_divide` regrouped as ``((tiles...), (rests...))``."""
    divided = logical_divide(a, tiler)
    if not isinstance(tiler, tuple):
        return divided
    n = len(tiler)
    tiles = make_layout(*(divided[i][0] for i in range(n)))
    rests = make_layout(*(divided[i][1] for i in range(n)), *(divided[i] for i in range(n, divided.rank)))
    return make_layout(tiles, rests)


def tiled_divide(a: Layout, tiler: Tiler) -> Layout:
    """`logical_divide` regrouped as ``((tiles...), rest0, rest1, ...)``."""
    zipped = zipped_divide(a, tiler)
    if not isinstance(tiler, tuple):
        return zipped
    rests = zipped[1]
    return make_layout(zipped[0], *(rests[i] for i in range(rests.rank)))


def logical_product(a: Layout, b: Layout | int) -> Layout:
    """Repeats `a` as laid out by `b`: ``(a, complement(a, a.size*b.cosize) o b)``.

    Mode 0 is `a`; mode 1 enumerates the copies, with ``size == a.size * b.size``.
    """
    if isinstance(b, int):
        b = Layout(b, 1)
    return make_layout(a, composition(complement(a, a.size * b.cosize), b))


def idx2crd(index: int, shape: IntTuple) -> IntTuple:
    """The colexicographic coordinate (congruent to `shape`) of a flat index."""
    if not 0 <= index < product(shape):
        raise LayoutError(f"index {index} is out of range for shape {format_int_tuple(shape)}")
    digits = []
    for s in leaves(shape):
        digits.append(index % s)
        index //= s
    return unflatten(digits, shape)


def is_injective(a: Layout) -> bool:
    """Whether distinct coordinates give distinct offsets (checked by enumeration)."""
    return len({a(i) for i in range(a.size)}) == a.size


__all__ = [
    "Layout",
    "make_layout",
    "make_layout_col_major",
    "make_layout_row_major",
    "flatten",
    "coalesce",
    "composition",
    "complement",
    "right_inverse",
    "left_inverse",
    "logical_divide",
    "zipped_divide",
    "tiled_divide",
    "logical_product",
    "idx2crd",
    "is_injective",
]
