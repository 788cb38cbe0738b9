"""Generic rewriting of the immutable IR: passes describe only what changes."""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

from . import nodes as N

_EXPR_TYPES = (N.Const, N.Var, N.TileRef, N.BlockId, N.BinOp, N.Unary, N.Cast, N.Where,
               N.Reduce, N.Broadcast, N.Iota, N.Full, N.Transpose)


def _map_field(v, fn):
    if isinstance(v, _EXPR_TYPES + (N.GlobalRef,)):
        return rewrite_expr(v, fn)
    if isinstance(v, tuple):
        return tuple(_map_field(x, fn) for x in v)
    return v


def rewrite_expr(e, fn: Callable):
    """Rebuild `e` bottom-up; `fn(node)` returns a replacement or None to keep it."""
    changes = {}
    for f in dataclasses.fields(e):
        if f.name == "loc":
            continue
        v = getattr(e, f.name)
        nv = _map_field(v, fn)
        if nv is not v:
            changes[f.name] = nv
    node = dataclasses.replace(e, **changes) if changes else e
    out = fn(node)
    return node if out is None else out


def rewrite_stmt(s: N.Stmt, fn: Callable, stmt_fn: Callable | None = None) -> N.Stmt:
    """Rewrite every expression of a statement tree with `fn`; `stmt_fn` may replace statements."""
    changes = {}
    for f in dataclasses.fields(s):
        if f.name == "loc":
            continue
        v = getattr(s, f.name)
        if f.name == "body":
            nv = tuple(rewrite_stmt(b, fn, stmt_fn) for b in v)
        else:
            nv = _map_field(v, fn)
        changes[f.name] = nv
    node = dataclasses.replace(s, **changes)
    if stmt_fn is not None:
        out = stmt_fn(node)
        return node if out is None else out
    return node


def walk_stmts(body: tuple[N.Stmt, ...]) -> Iterator[N.Stmt]:
    """Every statement, loops' bodies included, in program order."""
    for s in body:
        yield s
        if isinstance(s, N.For):
            yield from walk_stmts(s.body)


def sub_exprs(e) -> Iterator:
    """`e` and every expression inside it."""
    yield e
    for f in dataclasses.fields(e):
        if f.name == "loc":
            continue
        v = getattr(e, f.name)
        for x in (v if isinstance(v, tuple) else (v,)):
            if isinstance(x, _EXPR_TYPES + (N.GlobalRef,)):
                yield from sub_exprs(x)
