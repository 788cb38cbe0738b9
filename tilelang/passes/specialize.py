"""Bind compile-time parameters: every const becomes a literal, every dtype parameter a dtype.

The result is the kernel that the shape checker, the layout pass and the backends
see; constant scalar subexpressions (tile extents like `BK // 2`) are folded.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence, Union

from ..diagnostics import TileError, did_you_mean
from ..ir import nodes as N
from ..ir.dtypes import DTYPES, DType, from_user, listing
from ..ir.scalar import binop
from ..ir.visit import rewrite_expr, rewrite_stmt

ConstValue = Union[int, DType]


def resolve_consts(kernel: N.Kernel, given: Mapping[str, object] | None = None) -> dict[str, ConstValue]:
    """Defaults overridden by `given`; every const must end with a value."""
    given = dict(given or {})
    out: dict[str, ConstValue] = {}
    for c in kernel.consts:
        check_candidates(kernel, c)
        if c.name in given:
            v = given.pop(c.name)
            if c.kind == "dtype":
                v = dtype_value(kernel, c, v)
            elif isinstance(v, bool) or not isinstance(v, int):
                raise TileError(f"const '{c.name}' of kernel '{kernel.name}' must be an int, got {v!r}", c.loc,
                                hint=f"pass an int, e.g. {c.name}={c.default if c.default is not None else 16}")
            out[c.name] = v
        elif c.default is not None:
            out[c.name] = DTYPES[c.default] if c.kind == "dtype" else c.default
        else:
            raise TileError(f"kernel '{kernel.name}' needs a value for {c.kind} parameter '{c.name}'", c.loc,
                            hint=f"pass {c.name}=... when building or calling it, or give it a default")
    if given:
        name = sorted(given)[0]
        consts = [c.name for c in kernel.consts]
        raise TileError(f"kernel '{kernel.name}' has no compile-time parameter '{name}'", kernel.loc,
                        hint=did_you_mean(name, consts, "its compile-time parameters: " + (", ".join(consts) or "none")))
    return out


def check_candidates(kernel: N.Kernel, c: N.ConstParam) -> None:
    """A tunable const lists distinct ints that include its default (pinned values may lie outside)."""
    if not c.candidates:
        return
    where = f"const '{c.name}' of kernel '{kernel.name}'"
    if c.kind != "int":
        raise TileError(f"{where} is a dtype parameter and cannot have candidates", c.loc)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in c.candidates):
        raise TileError(f"{where} has non-integer candidates {list(c.candidates)}", c.loc)
    if len(set(c.candidates)) != len(c.candidates):
        raise TileError(f"{where} lists a candidate twice: {list(c.candidates)}", c.loc)
    if c.default not in c.candidates:
        raise TileError(f"the default {c.default} of {where} is not one of its candidates {list(c.candidates)}",
                        c.loc, hint="add the default to the candidate list")


def with_candidates(kernel: N.Kernel, candidates: Mapping[str, Sequence[int]]) -> N.Kernel:
    """The kernel with these candidate lists for its int consts (replacing any it declares)."""
    consts = {c.name: c for c in kernel.consts}
    params = list(kernel.params)
    for name, values in candidates.items():
        c = consts.get(name)
        if c is None or c.kind != "int":
            ints = [n for n, p in consts.items() if p.kind == "int"]
            raise TileError(f"kernel '{kernel.name}' has no int const '{name}' to tune", kernel.loc,
                            hint=did_you_mean(name, ints, f"its int consts: {', '.join(ints) or 'none'}"))
        values = tuple(values)
        if not values:
            raise TileError(f"candidates for const '{name}' of '{kernel.name}' are empty", c.loc)
        new = dataclasses.replace(c, candidates=values)
        check_candidates(kernel, new)
        params[params.index(c)] = new
    return dataclasses.replace(kernel, params=tuple(params))


def dtype_value(kernel: N.Kernel, c: N.ConstParam, v) -> DType:
    """The DType a caller passes for dtype parameter `c`: a name, a DType, or a torch or numpy dtype."""
    dt = from_user(v)
    if dt is None:
        suggestion = did_you_mean(str(v), DTYPES) if isinstance(v, str) else None
        raise TileError(f"{c.name}={v!r} given to '{kernel.name}' is not a dtype", c.loc,
                        hint=(suggestion + " " if suggestion else "") + "dtypes: " + listing())
    return dt


def specialize(kernel: N.Kernel, consts: Mapping[str, ConstValue]) -> N.Kernel:
    """Substitute `consts` (from `resolve_consts`) into the kernel and fold constants."""

    def dt(d: N.DTypeLike) -> N.DTypeLike:
        return consts[d] if isinstance(d, str) and d in consts else d

    def expr_fn(e):
        if isinstance(e, N.Var) and e.name in consts:
            return N.Const(consts[e.name], None, e.loc)
        if isinstance(e, (N.Cast, N.Full)) and isinstance(e.dtype, str):
            return dataclasses.replace(e, dtype=dt(e.dtype))
        if isinstance(e, N.BinOp) and _is_int_const(e.lhs) and _is_int_const(e.rhs):
            if e.op in ("floordiv", "mod", "cdiv") and e.rhs.value == 0:
                raise TileError("division by zero in a constant expression", e.loc)
            return N.Const(binop(e.op, e.lhs.value, e.rhs.value), None, e.loc)
        return None

    def stmt_fn(s):
        if isinstance(s, N.Alloc) and isinstance(s.dtype, str):
            return dataclasses.replace(s, dtype=dt(s.dtype))
        return None

    params = []
    for p in kernel.params:
        if isinstance(p, (N.TensorParam, N.ScalarParam)) and isinstance(p.dtype, str):
            p = dataclasses.replace(p, dtype=dt(p.dtype))
        if isinstance(p, N.TensorParam):
            p = dataclasses.replace(p, dims=tuple(consts.get(d, d) if isinstance(d, str) else d for d in p.dims))
        params.append(p)
    return dataclasses.replace(
        kernel,
        params=tuple(params),
        grid=tuple(rewrite_expr(g, expr_fn) for g in kernel.grid),
        threads=rewrite_expr(kernel.threads, expr_fn),
        body=tuple(rewrite_stmt(s, expr_fn, stmt_fn) for s in kernel.body),
    )


def _is_int_const(e) -> bool:
    return isinstance(e, N.Const) and isinstance(e.value, int) and not isinstance(e.value, bool)
