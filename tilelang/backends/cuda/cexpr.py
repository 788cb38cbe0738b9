"""Building integer C++ expressions as text, folding the constants that make generated code noisy.

Operands are non-negative ints (thread indices, value indices, tile coordinates), so
`/` and `%` mean the same in C++ and in Python's `//` and `%`; tests evaluate the
text with Python to check it.
"""
from __future__ import annotations

from ..text import paren


def _int(a: str) -> int | None:
    return int(a) if a.isdigit() else None


def mul(a: str, k: int) -> str:
    if k == 0 or a == "0":
        return "0"
    if k == 1:
        return a
    n = _int(a)
    return str(n * k) if n is not None else f"{paren(a)} * {k}"


def div(a: str, k: int) -> str:
    if k == 1 or a == "0":
        return a
    n = _int(a)
    return str(n // k) if n is not None else f"{paren(a)} / {k}"


def mod(a: str, k: int) -> str:
    if k == 1:
        return "0"
    n = _int(a)
    return str(n % k) if n is not None else f"{paren(a)} % {k}"


def _top_terms(a: str) -> list[str]:
    """`a` split at its top-level ' + ' (outside parentheses)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(a):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and a.startswith(" + ", i):
            out.append(a[start:i])
            start = i + 3
    out.append(a[start:])
    return out


def add(*terms: str) -> str:
    terms = tuple(p for t in terms for p in _top_terms(t))
    const = sum(_int(t) or 0 for t in terms if _int(t) is not None)
    rest = [t for t in terms if _int(t) is None]
    if const:
        rest.append(str(const))
    return " + ".join(rest) if rest else "0"


def row_major_offset(coords: list[str], shape: tuple[int, ...]) -> str:
    """Offset of `coords` in a dense row-major array of `shape`."""
    terms, stride = [], 1
    for c, s in zip(reversed(coords), reversed(shape)):
        if s > 1:
            terms.append(mul(c, stride))
        stride *= s
    return add(*reversed(terms))


def unravel(e: str, shape: tuple[int, ...]) -> list[str]:
    """Row-major coordinates of flat index `e` (assumed < prod(shape))."""
    coords, stride = [], 1
    for i in range(len(shape) - 1, -1, -1):
        s = shape[i]
        if s == 1:
            coords.append("0")
        else:
            q = div(e, stride)
            coords.append(q if i == 0 or all(x == 1 for x in shape[:i]) else mod(q, s))
        stride *= s
    return coords[::-1]
