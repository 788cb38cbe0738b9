"""Generic rewriting and visiting of the immutable IR: passes describe only what changes, backends
only what each statement kind becomes."""
from __future__ import annotations

import dataclasses
import typing
from typing import Callable, Iterator

from . import nodes as N

_EXPR_TYPES = (N.Const, N.Var, N.TileRef, N.BlockId, N.BinOp, N.Unary, N.Cast, N.Where,
               N.Reduce, N.Broadcast, N.Iota, N.Full, N.Transpose, N.ElemOffset)


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
        if f.name in ("body", "orelse"):  # nested statements (loops, both branches of an if)
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
        elif isinstance(s, N.If):
            yield from walk_stmts(s.body + s.orelse)


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


STMT_KINDS: tuple[type, ...] = typing.get_args(N.Stmt)  # every statement kind, from the one Union


class StmtVisitor:
    """Dispatch on a statement's kind to the subclass's `visit_<Kind>` (`visit_Copy`, ...).

    Interpreters and emitters derive from it; a statement kind without its method is a compiler
    bug, raised as an InternalError naming `where` (the backend), never skipped silently.
    `tests/test_conformance.py` checks that every kind has a method in every one of them."""

    where = "a backend"

    def visit(self, s: N.Stmt, *args):
        fn = getattr(self, "visit_" + type(s).__name__, None)
        if fn is None:
            from ..diagnostics import InternalError
            raise InternalError(f"no emitter for statement kind {type(s).__name__}", self.where, None,
                                getattr(s, "loc", None))
        return fn(s, *args)
