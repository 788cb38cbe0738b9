"""Transforms of task mappings that layout inference needs, on a canonical digit form.

A task mapping is a product of atoms; each atom is a sequence of *digits*
(outermost first): a spatial digit spreads one tile axis over threads, a local
digit over one thread's values, a replicate digit gives several threads the
same elements. Every mapping the inference builds is rebuilt from its digits
(trivial digits dropped, neighbours on one axis merged, runs regrouped into
atoms), so a mapping printed as an annotation and read back is `==` to the
original, and plans print the same way whether inferred or annotated.
Different digit orders can still denote one function; `conversion_kind`
compares functions, not structure.

Operations: `canonical`, `collapse` (the reduced or broadcast axes become
replicated), `transpose`, `drop_leading` / `pad_leading` (rank changes of
broadcasting), `table` (every (thread, value)'s coordinate, as numpy),
`conversion_kind` (can a thread build one mapping from the other alone?), `terms` (each
coordinate as a sum of digits of the thread and value indices, which backends print),
`vector_run` (contiguous values per thread along an axis), and `as_expr`
(the mapping as a `layout=` annotation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..ir.nodes import LayoutExpr
from .task_mapping import TaskMapping, column_spatial, local, replicate, spatial


@dataclass(frozen=True)
class Digit:
    kind: str  # "S" spatial, "L" local, "R" replicate
    dim: int  # tile axis; -1 for replicate digits
    extent: int


def digits(m: TaskMapping) -> tuple[Digit, ...]:
    """The mapping's digits, outermost first."""
    out = []
    for a in m.atoms:
        if a.kind == "replicate":
            out.append(Digit("R", -1, a.replicas))
            continue
        order = range(len(a.shape)) if not a.column_major else range(len(a.shape) - 1, -1, -1)
        out += [Digit("S" if a.kind == "spatial" else "L", d, a.shape[d]) for d in order]
    return tuple(d for d in out if d.extent > 1)


def _normalize(ds: list[Digit]) -> list[Digit]:
    """Merge neighbouring digits of one kind on one axis (spatial(2) * spatial(2) is spatial(4))."""
    out: list[Digit] = []
    for d in ds:
        if out and out[-1].kind == d.kind and out[-1].dim == d.dim:
            out[-1] = Digit(d.kind, d.dim, out[-1].extent * d.extent)
        else:
            out.append(d)
    return out


def from_digits(ds, rank: int) -> TaskMapping:
    """The canonical mapping of `ds` over a rank-`rank` tile."""
    ds = _normalize([d for d in ds if d.extent > 1])
    atoms: list[TaskMapping] = []
    i = 0
    while i < len(ds):
        d = ds[i]
        if d.kind == "R":
            atoms.append(replicate(d.extent))
            i += 1
            continue
        j = i + 1
        while j < len(ds) and ds[j].kind == d.kind and ds[j].dim > ds[j - 1].dim:
            j += 1
        column = False
        if j == i + 1 and d.kind == "S":
            while j < len(ds) and ds[j].kind == "S" and ds[j].dim < ds[j - 1].dim:
                j += 1
            column = j > i + 1
        shape = [1] * rank
        for x in ds[i:j]:
            shape[x.dim] = x.extent
        make = (column_spatial if column else spatial) if d.kind == "S" else local
        atoms.append(make(*shape))
        i = j
    if not any(a.atoms[0].kind != "replicate" for a in atoms):
        atoms.append(local(*([1] * rank)))  # carries the rank
    out = atoms[0]
    for a in atoms[1:]:
        out = out * a
    return out


def rank_of(m: TaskMapping) -> int:
    return len(m.shape)


def canonical(m: TaskMapping) -> TaskMapping:
    return from_digits(digits(m), rank_of(m))


def collapse(m: TaskMapping, axes) -> TaskMapping:
    """The mapping of the tile with `axes` shrunk to extent 1: spatial digits there become
    replication (the threads that held a row of a reduction all hold its result), local
    digits vanish. The mapping a broadcast operand needs, and a reduction's result."""
    axes = set(axes)
    out = []
    for d in digits(m):
        if d.dim in axes:
            if d.kind == "S":
                out.append(Digit("R", -1, d.extent))
        else:
            out.append(d)
    return from_digits(out, rank_of(m))


def permute(m: TaskMapping, perm: tuple[int, ...]) -> TaskMapping:
    """Reorder the tile's axes: axis k of the result is axis `perm[k]` of `m`'s tile."""
    where = {old: new for new, old in enumerate(perm)}
    return from_digits([Digit(d.kind, where.get(d.dim, -1), d.extent) for d in digits(m)], rank_of(m))


def transpose(m: TaskMapping) -> TaskMapping:
    return permute(m, (1, 0))


def drop_leading(m: TaskMapping, n: int) -> TaskMapping:
    """Remove `n` leading axes of extent 1 (a broadcast operand of lower rank)."""
    if any(d.dim != -1 and d.dim < n for d in digits(m)):
        raise ValueError(f"cannot drop axes of extent > 1 from {m!r}")
    return from_digits([Digit(d.kind, d.dim - n if d.dim >= 0 else -1, d.extent) for d in digits(m)], rank_of(m) - n)


def pad_leading(m: TaskMapping, n: int) -> TaskMapping:
    return from_digits([Digit(d.kind, d.dim + n if d.dim >= 0 else -1, d.extent) for d in digits(m)], rank_of(m) + n)


def replication(m: TaskMapping) -> int:
    """How many threads hold each element."""
    return math.prod(d.extent for d in digits(m) if d.kind == "R")


@dataclass(frozen=True)
class Term:
    """One digit of a tile coordinate: ``(index // divisor) % extent * scale``, where the index is
    the thread's (`source` "thread") or the value's ("value")."""

    source: str
    divisor: int
    extent: int
    scale: int


@lru_cache(maxsize=4096)
def terms(m: TaskMapping) -> tuple[tuple[Term, ...], ...]:
    """Per tile axis, the terms whose sum is that coordinate of (thread, value), innermost digit
    first: how a backend computes, in its own syntax, which element a thread's value holds."""
    out: list[list[Term]] = [[] for _ in m.shape]
    scale = [1] * len(m.shape)
    strides = {"S": 1, "L": 1}  # threads / values inside the digits seen so far
    for d in reversed(digits(m)):
        if d.kind == "R":
            strides["S"] *= d.extent
            continue
        out[d.dim].append(Term("thread" if d.kind == "S" else "value", strides[d.kind], d.extent, scale[d.dim]))
        strides[d.kind] *= d.extent
        scale[d.dim] *= d.extent
    return tuple(tuple(x) for x in out)


@lru_cache(maxsize=4096)
def table(m: TaskMapping) -> np.ndarray:
    """`[threads, values]` array of each (thread, value)'s row-major linear coordinate."""
    shape = m.shape
    index = {"thread": np.arange(m.num_threads)[:, None], "value": np.arange(m.values_per_thread)[None, :]}
    linear = np.zeros((m.num_threads, m.values_per_thread), dtype=np.int64)
    for axis, axis_terms in enumerate(terms(m)):
        c = sum(((index[t.source] // t.divisor) % t.extent * t.scale for t in axis_terms), np.zeros((1, 1), np.int64))
        linear = linear * shape[axis] + c
    return linear


def coords(m: TaskMapping) -> np.ndarray:
    """`[threads, values, rank]` array of coordinates."""
    return np.stack(np.unravel_index(table(m), m.shape), axis=-1) if m.shape else table(m)[..., None]


@lru_cache(maxsize=4096)
def conversion_kind(src: TaskMapping, dst: TaskMapping) -> str:
    """How a tile held by `src` becomes one held by `dst`.

    "none": the same mapping; "registers": every thread already holds what `dst` gives it
    (a renaming of registers, free); "shared": threads exchange values (through shared memory).
    """
    if src.shape != dst.shape or src.num_threads != dst.num_threads:
        return "shared"
    if src == dst or (src.values_per_thread == dst.values_per_thread and (table(src) == table(dst)).all()):
        return "none"
    numel = math.prod(src.shape)
    held = np.zeros((src.num_threads, numel), dtype=bool)
    held[np.arange(src.num_threads)[:, None], table(src)] = True
    ok = held[np.arange(dst.num_threads)[:, None], table(dst)].all()
    return "registers" if ok else "shared"


@lru_cache(maxsize=4096)
def vector_run(m: TaskMapping, axis: int = -1) -> int:
    """The largest power of two w such that each thread's values, in groups of w, are w
    consecutive, w-aligned elements along `axis` (the width of its vector accesses)."""
    c = coords(m)
    axis = axis % len(m.shape)
    values = m.values_per_thread
    w = 1
    while values % (2 * w) == 0:
        cand = 2 * w
        g = c.reshape(m.num_threads, values // cand, cand, len(m.shape))
        first = g[:, :, :1, :]
        step = np.zeros(len(m.shape), dtype=np.int64)
        step[axis] = 1
        expect = first + np.arange(cand)[None, None, :, None] * step
        if not ((g == expect).all() and (first[..., axis] % cand == 0).all()):
            break
        w = cand
    return w


def as_expr(m: TaskMapping) -> LayoutExpr:
    """The mapping as a `layout=` annotation (`spatial(...) * local(...)`)."""
    parts = []
    for a in canonical(m).atoms:
        if a.kind == "replicate":
            parts.append(LayoutExpr("replicate", (a.replicas,)))
        else:
            name = ("column_" if a.column_major else "") + a.kind
            parts.append(LayoutExpr(name, tuple(a.shape)))
    return parts[0] if len(parts) == 1 else LayoutExpr("*", tuple(parts))
