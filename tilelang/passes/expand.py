"""Derived forms, rewritten into core IR once every tile's shape is known (after `infer`).

`argmax(x, axis=a)`: the i32 index along `a` of the largest element of each row, the axis kept with
extent 1. NaN is larger than every number (as numpy's and torch's argmax); among equal maxima, or
among NaNs, the smallest index wins. With E the extent of axis a and I = iota(shape(x), axis=a):

    nan_i = min(where(x != x, I, E), axis=a)           first NaN (E: none)
    m     = max(where(x != x, -inf, x), axis=a)        largest number
    idx   = where(nan_i < E, nan_i, min(where(x == m, I, E), axis=a))

(integer tiles: idx = min(where(x == max(x, axis=a), I, E), axis=a)). Every backend and the
interpreter run this form, so they agree on ties and NaNs by construction.
"""
from __future__ import annotations

import dataclasses

from ..ir import nodes as N
from ..ir.visit import rewrite_stmt
from .infer import TypedKernel, infer


def expand(tk: TypedKernel) -> TypedKernel:
    """`tk` with every argmax rewritten (and typed again), or `tk` itself when it has none."""
    found = []

    def fn(e):
        if isinstance(e, N.Reduce) and e.op == "argmax":
            found.append(e)
            return _argmax(tk, e)
        return None
    body = tuple(rewrite_stmt(s, fn) for s in tk.kernel.body)
    return infer(dataclasses.replace(tk.kernel, body=body), tk.consts) if found else tk


def _argmax(tk: TypedKernel, e: N.Reduce) -> N.Expr:
    x, a, loc = e.x, e.axis, e.loc
    t = tk.type_of(x)
    extent = N.Const(t.shape[a], None, loc)
    iota = N.Iota(tuple(N.Const(d, None, loc) for d in t.shape), a, loc)

    def first(cond):
        return N.Reduce("min", N.Where(cond, iota, extent, loc), a, loc)
    if not t.dtype.is_float:
        return first(N.BinOp("eq", x, N.Reduce("max", x, a, loc), loc))
    nan = N.BinOp("ne", x, x, loc)
    minus_inf = N.Unary("neg", N.Const(float("inf"), None, loc), loc)  # as `-inf` in source reads back
    m = N.Reduce("max", N.Where(nan, minus_inf, x, loc), a, loc)
    nan_i = first(nan)
    return N.Where(N.BinOp("lt", nan_i, extent, loc), nan_i, first(N.BinOp("eq", x, m, loc)), loc)
