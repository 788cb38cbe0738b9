"""The surface syntax tree both front ends produce.

`.tile` text (lark) and `@tile_kernel` functions (Python `ast`) are parsed into
these few node types; `builder.build_kernel` alone turns them into IR, so the two
languages cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..diagnostics import UNKNOWN, SourceLoc


def _loc() -> SourceLoc:
    return field(default=UNKNOWN, compare=False, repr=False)


@dataclass(frozen=True)
class SName:
    id: str
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SNum:
    value: Union[int, float, bool]
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SBin:
    """Binary operator, spelled as in Python: '+', '//', '<=', '&', ..."""
    op: str
    lhs: "SExpr"
    rhs: "SExpr"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SUnary:
    op: str  # '-' or '~'
    x: "SExpr"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SCall:
    func: str
    args: tuple["SExpr", ...]
    kwargs: tuple[tuple[str, "SExpr"], ...] = ()
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SSubscript:
    """`name[i, j]`: a type (`f16[BM, BK]`) or a global tensor window (`A[pid, k]`)."""
    base: str
    indices: tuple["SExpr", ...]
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SSlice:
    """`start:` or `start:stop` as a window index: an offset in elements (only inside `T[...]`)."""
    start: "SExpr"
    stop: "SExpr | None" = None
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class STuple:
    items: tuple["SExpr", ...]
    loc: SourceLoc = _loc()


SExpr = Union[SName, SNum, SBin, SUnary, SCall, SSubscript, STuple, SSlice]


@dataclass(frozen=True)
class SAssign:
    targets: tuple[str, ...]
    value: SExpr
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SExprStmt:
    call: SCall
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SFor:
    var: str
    iter: SCall  # range(...) or pipelined(..., stages=...)
    body: tuple["SStmt", ...]
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SIf:
    """`if cond { ... } else { ... }` (`elif`/`else if` nest another SIf in `orelse`)."""
    cond: SExpr
    body: tuple["SStmt", ...]
    orelse: tuple["SStmt", ...] = ()
    loc: SourceLoc = _loc()


SStmt = Union[SAssign, SExprStmt, SFor, SIf]


@dataclass(frozen=True)
class SParam:
    """`name: type` or `name: const = default`; `annotation` is an SName or SSubscript."""
    name: str
    annotation: SExpr
    default: SExpr | None = None
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class SKernel:
    name: str
    params: tuple[SParam, ...]
    grid: tuple[SExpr, ...]
    threads: SExpr
    body: tuple[SStmt, ...]
    loc: SourceLoc = _loc()
