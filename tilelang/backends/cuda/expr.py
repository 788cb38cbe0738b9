"""Scalar and elementwise tile expressions as C++, with the reference interpreter's semantics.

Scalars follow the interpreter's Python arithmetic: an int op a float is a float,
`/` is true division, integer `//` and `%` truncate (as C does), `cdiv` is the
ceiling.  Tile expressions are evaluated one element at a time at a coordinate:
each operation runs in the compute type (float / long long / bool) and its result
is rounded to the node's dtype, which is what makes f16 chains match the
interpreter's per-op rounding.  How a tile operand's element is fetched (a
register of this thread, or a shared-memory copy) is the caller's business:
`element` asks its `leaf` callback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.dtypes import DType, f32
from ...ir.types import ScalarType, TileType
from ...passes.infer import TypedKernel
from . import ctype
from .mapping import squeeze


@dataclass(frozen=True)
class Val:
    code: str
    kind: str  # "float", "int" or "bool"
    dtype: DType | None = None  # None for scalars, whose C value follows Python's promotion


_FLOAT_FN = {"exp": "expf", "exp2": "exp2f", "log": "logf", "log2": "log2f", "sqrt": "sqrtf",
             "tanh": "tanhf", "sin": "sinf", "cos": "cosf", "erf": "erff", "sigmoid": "tl::sigmoid",
             "silu": "tl::silu", "gelu": "tl::gelu", "gelu_tanh": "tl::gelu_tanh"}
_C_OP = {"add": "+", "sub": "-", "mul": "*", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==",
         "ne": "!=", "and": "&", "or": "|", "xor": "^", "shl": "<<", "shr": ">>"}
_AXES = "xyz"


def cname(name: str) -> str:
    """User names get a trailing underscore: they can then clash with no C++ keyword or helper."""
    return name + "_"


def coords_for(child_shape: tuple[int, ...], shape: tuple[int, ...], coords: list[str]) -> list[str]:
    """Coordinates of a broadcast operand (right-aligned; extent-1 axes read index 0)."""
    lead = len(shape) - len(child_shape)
    return ["0" if s == 1 else coords[i + lead] for i, s in enumerate(child_shape)]


class ExprEmitter:
    """Translates expressions; `temp(ctype, code)` declares a named temporary and returns its name."""

    def __init__(self, tk: TypedKernel, kinds: dict[str, str], temp: Callable[[str, str], str],
                 virtual: dict[str, N.Expr]):
        self.tk = tk
        self.kinds = kinds
        self.temp = temp
        self.virtual = virtual  # tiles that are recomputed from their definition where they are read

    # ------------------------------------------------------------------ scalars
    def scalar(self, e: N.Expr) -> Val:
        if isinstance(e, N.Const):
            v = e.value
            if isinstance(v, bool):
                return Val("true" if v else "false", "bool")
            if isinstance(v, int):
                return Val(str(v) if -2**31 <= v < 2**31 else ctype.int_literal(v), "int")
            if isinstance(v, DType):
                raise TileError(f"dtype {v} is not a value", e.loc)
            return Val(ctype.literal(v, f32), "float")
        if isinstance(e, N.Var):
            return Val(cname(e.name), self.kinds[e.name])
        if isinstance(e, N.BlockId):
            return Val(f"(int)blockIdx.{_AXES[e.axis]}", "int")
        if isinstance(e, N.BinOp):
            return self._scalar_binop(e.op, self.scalar(e.lhs), self.scalar(e.rhs))
        if isinstance(e, N.Unary):
            return self._scalar_unary(e.op, self.scalar(e.x))
        if isinstance(e, N.Cast):
            x = self.scalar(e.x)
            return Val(ctype.cast(x.code, x.kind, e.dtype), ctype.kind(e.dtype))
        if isinstance(e, N.Where):
            c, a, b = self.scalar(e.cond), self.scalar(e.a), self.scalar(e.b)
            kind = "float" if "float" in (a.kind, b.kind) else a.kind
            return Val(f"({c.code} ? {_as_kind(a, kind)} : {_as_kind(b, kind)})", kind)
        raise TileError(f"{type(e).__name__} is not a scalar", e.loc)

    def _scalar_binop(self, op: str, a: Val, b: Val) -> Val:
        flt = "float" in (a.kind, b.kind)
        if op in ("lt", "le", "gt", "ge", "eq", "ne"):
            return Val(f"({a.code} {_C_OP[op]} {b.code})", "bool")
        if op in ("add", "sub", "mul"):
            return Val(f"({a.code} {_C_OP[op]} {b.code})", "float" if flt else "int")
        if op == "div":
            return Val(f"((float)({a.code}) / (float)({b.code}))", "float")
        if op == "floordiv":
            return Val(f"floorf((float)({a.code}) / (float)({b.code}))", "float") if flt else \
                Val(f"({a.code} / {b.code})", "int")
        if op == "mod":
            return Val(f"fmodf((float)({a.code}), (float)({b.code}))", "float") if flt else \
                Val(f"({a.code} % {b.code})", "int")
        if op == "cdiv":
            return Val(f"ceilf((float)({a.code}) / (float)({b.code}))", "float") if flt else \
                Val(f"tl::cdiv({a.code}, {b.code})", "int")
        if op in ("max", "min"):
            if flt:
                return Val(f"f{op}f((float)({a.code}), (float)({b.code}))", "float")
            return Val(f"tl::{op}_ll({a.code}, {b.code})", "int")
        if op == "pow":
            return Val(f"powf((float)({a.code}), (float)({b.code}))", "float")
        kind = "bool" if a.kind == b.kind == "bool" else "int"
        return Val(f"({a.code} {_C_OP[op]} {b.code})", kind)

    def _scalar_unary(self, op: str, x: Val) -> Val:
        if op == "neg":
            return Val(f"(-{x.code})", x.kind if x.kind != "bool" else "int")
        if op == "not":
            return Val(f"(!{x.code})", "bool") if x.kind == "bool" else Val(f"(~{x.code})", "int")
        if op == "abs":
            return Val(f"fabsf({x.code})", "float") if x.kind == "float" else \
                Val(f"(({x.code}) < 0 ? -({x.code}) : ({x.code}))", "int")
        return Val(_float_fn(op, f"(float)({x.code})"), "float")

    # ------------------------------------------------------------------ tile elements
    def element(self, e: N.Expr, coords: list[str], ident: bool,
                leaf: Callable[[N.Expr, list[str], bool], str]) -> Val:
        """The compute value of `e` at `coords` (one per axis of e's shape).

        `ident` says the coordinates are this thread's own (no broadcast or transpose on the
        way down), which lets `leaf` read registers directly."""
        t = self.tk.type_of(e)
        if isinstance(t, ScalarType):
            return self.scalar(e)
        assert isinstance(t, TileType)
        dt = t.dtype

        def sub(child: N.Expr) -> Val:
            ct = self.tk.type_of(child)
            if isinstance(ct, ScalarType):
                return self.scalar(child)
            same = squeeze(ct.shape) == squeeze(t.shape)
            return self.element(child, coords_for(ct.shape, t.shape, coords), ident and same, leaf)

        if isinstance(e, N.TileRef) and e.name in self.virtual:
            return self.element(self.virtual[e.name], coords, False, leaf)
        if isinstance(e, (N.TileRef, N.Reduce)):
            return Val(ctype.to_compute(leaf(e, coords, ident), dt), ctype.kind(dt), dt)
        if isinstance(e, N.BinOp):
            a, b = sub(e.lhs), sub(e.rhs)
            if e.op in N.COMPARISONS:
                od = next(v.dtype for v in (a, b) if v.dtype is not None)
                code = f"({_to(a, od)} {_C_OP[e.op]} {_to(b, od)})"
            else:
                code = ctype.rounded(_tile_binop(e.op, _to(a, dt), _to(b, dt), dt), dt)
            return self._val(code, dt)
        if isinstance(e, N.Unary):
            x = _to(sub(e.x), dt)
            return self._val(_tile_unary(e.op, x, dt), dt)
        if isinstance(e, N.Cast):
            x = sub(e.x)
            return self._val(x.code if x.dtype == dt else ctype.cast(x.code, x.kind, dt), dt)
        if isinstance(e, N.Where):
            c, a, b = sub(e.cond), sub(e.a), sub(e.b)
            cond = c.code if c.kind == "bool" else f"({c.code} != 0)"
            return self._val(f"({cond} ? {_to(a, dt)} : {_to(b, dt)})", dt)
        if isinstance(e, N.Full):
            v = self.scalar(e.value)
            return Val(ctype.cast(v.code, v.kind, dt), ctype.kind(dt), dt)
        if isinstance(e, N.Iota):
            return Val(f"(long long)({coords[e.axis]})", "int", dt)
        if isinstance(e, N.Broadcast):
            xt = self.tk.type_of(e.x)
            return self.element(e.x, coords_for(xt.shape, t.shape, coords), False, leaf)  # type: ignore[union-attr]
        if isinstance(e, N.Transpose):
            return self.element(e.x, [coords[1], coords[0]], False, leaf)
        raise TileError(f"the CUDA backend cannot evaluate {type(e).__name__}", getattr(e, "loc", None))

    def _val(self, code: str, dt: DType) -> Val:
        return Val(self.temp(ctype.compute(dt), code), ctype.kind(dt), dt)


def _as_kind(v: Val, kind: str) -> str:
    return f"(float)({v.code})" if kind == "float" and v.kind != "float" else v.code


def _to(v: Val, dt: DType) -> str:
    """A value as a compute value of `dt` (tile operands already are; scalars convert)."""
    return v.code if v.dtype == dt else ctype.cast(v.code, v.kind, dt)


def _float_fn(op: str, x: str) -> str:
    if op == "rsqrt":
        return f"(1.0f / sqrtf({x}))"
    if op == "recip":
        return f"(1.0f / {x})"
    return f"{_FLOAT_FN[op]}({x})"


def _tile_binop(op: str, a: str, b: str, dt: DType) -> str:
    flt = dt.is_float
    if op in _C_OP:
        return f"({a} {_C_OP[op]} {b})"
    if op == "div":
        return f"({a} / {b})"
    if op == "floordiv":
        return f"floorf({a} / {b})" if flt else f"({a} / {b})"
    if op == "mod":
        return f"fmodf({a}, {b})" if flt else f"({a} % {b})"
    if op == "cdiv":
        return f"ceilf({a} / {b})" if flt else f"tl::cdiv({a}, {b})"
    if op in ("max", "min"):
        return f"f{op}f({a}, {b})" if flt else f"tl::{op}_ll({a}, {b})"
    if op == "pow":
        return f"powf({a}, {b})"
    raise TileError(f"unknown operator {op}")


def _tile_unary(op: str, x: str, dt: DType) -> str:
    if op == "not":
        return f"(!{x})" if dt.kind == "bool" else ctype.rounded(f"(~{x})", dt)
    if op == "neg":
        return ctype.rounded(f"(-{x})", dt)
    if op == "abs":
        return ctype.rounded(f"fabsf({x})" if dt.is_float else f"(({x}) < 0 ? -({x}) : ({x}))", dt)
    return ctype.rounded(_float_fn(op, x), dt)
