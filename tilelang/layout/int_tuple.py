"""Hierarchical integer tuples ("IntTuple"): the shapes and strides of layouts.

An IntTuple is an ``int`` or a tuple of IntTuples, e.g. ``((2, 2), 8)``.
"""

from __future__ import annotations

import math
from typing import Iterator, Union

from .errors import LayoutError

IntTuple = Union[int, tuple["IntTuple", ...]]


def normalize(value: object, what: str) -> IntTuple:
    """Turns lists and integer-likes (numpy ints) into plain ints and tuples."""
    if isinstance(value, (list, tuple)):
        return tuple(normalize(v, what) for v in value)
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise LayoutError(f"{what} must be an int or a nested tuple of ints, got {value!r}")
    return int(value.__index__())


def leaves(value: IntTuple) -> Iterator[int]:
    """The ints of `value`, left to right."""
    if isinstance(value, int):
        yield value
    else:
        for v in value:
            yield from leaves(v)


def product(value: IntTuple) -> int:
    return math.prod(leaves(value))


def depth(value: IntTuple) -> int:
    if isinstance(value, int):
        return 0
    return 1 + max((depth(v) for v in value), default=0)


def congruent(a: IntTuple, b: IntTuple) -> bool:
    """Whether `a` and `b` have the same nesting structure."""
    if isinstance(a, int) or isinstance(b, int):
        return isinstance(a, int) and isinstance(b, int)
    return len(a) == len(b) and all(congruent(x, y) for x, y in zip(a, b))


def unflatten(flat: list[int], profile: IntTuple) -> IntTuple:
    """Rebuilds the nesting of `profile` from its leaves, consuming `flat` in order."""
    if isinstance(profile, int):
        return flat.pop(0)
    return tuple(unflatten(flat, p) for p in profile)


def format_int_tuple(value: IntTuple) -> str:
    if isinstance(value, int):
        return str(value)
    return "(" + ",".join(format_int_tuple(v) for v in value) + ")"
