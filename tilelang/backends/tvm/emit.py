"""TVMScript text for tile expressions, evaluated one element at a time.

A tile expression is emitted as the value of one element at an index (a tuple of
index expressions, one per axis of the expression's shape); the lowering puts it
inside loops over the tile.  Arithmetic follows the interpreter: floats are
computed in f32 and rounded to the result dtype after every operation, integers
in their own dtype, integer `//` and `%` truncate toward zero (`T.truncdiv`).
Operands that a formula repeats (silu's `x`) are repeated in the text: TVM's
common-subexpression pass computes them once, while let-binding them breaks two
TVM 0.27 passes (a let statement in a vectorized loop keeps one lane; bf16
legalization misses loads inside a Let expression).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.dtypes import DType
from ...ir.types import ScalarType, TileType

_TIR = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f8e4m3": "float8_e4m3fn",
        "f8e5m2": "float8_e5m2", "i8": "int8", "u8": "uint8", "i32": "int32", "u32": "uint32",
        "i64": "int64", "bool": "bool"}
_INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-2**31, 2**31 - 1),
              "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1)}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_LITERAL = re.compile(r'T\.(float32|int32|int64)\(("?-?[\w.+-]+"?)\)')  # a constant whose cast can fold


def tir_dtype(dt: DType) -> str:
    """TIR dtype holding one element; packed sub-byte integers are held unpacked in int32."""
    return "int32" if dt.is_packed else _TIR[dt.name]


def is_float(tdt: str) -> bool:
    return tdt.startswith(("float", "bfloat"))


def compute_dtype(tdt: str) -> str:
    """Floats are computed in f32, everything else in its own dtype."""
    return "float32" if is_float(tdt) else tdt


def literal(value, tdt: str | None = None) -> str:
    """A typed TVMScript constant."""
    if isinstance(value, bool):
        return f"T.bool({value})"
    if isinstance(value, int) and (tdt is None or not is_float(tdt)):
        tdt = tdt or ("int32" if -2**31 <= value < 2**31 else "int64")
        return f"T.{tdt}({value})"
    v = float(value)
    text = repr(v) if math.isfinite(v) else f'"{v}"'
    return f"T.{tdt or 'float32'}({text})"


@dataclass(frozen=True)
class Val:
    """TIR expression text and its dtype."""
    text: str
    dtype: str


def cast(v: Val, to: str) -> Val:
    """Convert like the interpreter: floats to ints truncate and saturate, anything to bool tests != 0."""
    if v.dtype == to:
        return v
    m = _LITERAL.fullmatch(v.text)
    if m and to != "bool" and (is_float(to) or not is_float(v.dtype)):  # fold the cast of a constant
        num = m.group(2)
        if is_float(to):
            return Val(literal(float(num.strip('"')), to), to)
        lo, hi = _INT_RANGE[to]
        if lo <= int(num) <= hi:
            return Val(literal(int(num), to), to)
    if to == "bool":
        zero = literal(0.0 if is_float(v.dtype) else 0, v.dtype)
        return Val(f"({v.text} != {zero})", "bool")
    if is_float(v.dtype) and not is_float(to):
        lo, hi = _INT_RANGE[to]
        f = cast(v, "float32").text
        # the largest f32 below hi, so the clamp itself cannot overflow the conversion
        hi_f = float(hi) if hi < 2**24 else math.ldexp(1.0, math.frexp(hi)[1]) * (1 - 2**-24)
        return Val(f'T.Cast("{to}", T.max(T.min({f}, {literal(hi_f)}), {literal(float(lo))}))', to)
    if is_float(v.dtype) and is_float(to) and "float32" not in (v.dtype, to):
        v = cast(v, "float32")  # f16 <-> bf16 <-> f8 go through f32
    return Val(f'T.Cast("{to}", {v.text})', to)


class ExprEmitter:
    """Emits one statement's expressions.

    `read(tile, idx)` returns the text that loads an element of a tile; `names`
    maps scalar names to values; `materialized` maps reductions computed
    beforehand to the buffer that holds them."""

    def __init__(self, tk, names: dict[str, Val], block_ids: tuple[str, ...],
                 read: Callable[[str, tuple[str, ...]], str], materialized: dict | None = None):
        self.tk = tk
        self.names = names
        self.block_ids = block_ids
        self.read = read
        self.materialized = materialized or {}

    # ------------------------------------------------------------------ entry points
    def value(self, e: N.Expr, idx: tuple[str, ...] = ()) -> Val:
        """The element of `e` at `idx` (an index per axis of e's shape; ignored for scalars)."""
        t = self.tk.type_of(e)
        if e in self.materialized:  # a reduction, held in its compute dtype
            tdt = tir_dtype(t.dtype)
            return _round(Val(self.read(self.materialized[e], idx), compute_dtype(tdt)), tdt)
        if isinstance(t, ScalarType):
            return self._scalar(e, t)
        return self._tile(e, t, idx)

    def at(self, e: N.Expr, idx: tuple[str, ...], shape: tuple[int, ...]) -> Val:
        """The element of `e` that broadcasts to `idx` of a result of `shape`."""
        t = self.tk.type_of(e)
        if isinstance(t, ScalarType):
            return self.value(e)
        return self.value(e, broadcast_index(idx, shape, t.shape))

    # ------------------------------------------------------------------ leaves
    def _scalar(self, e: N.Expr, t: ScalarType) -> Val:
        if isinstance(e, N.Const):
            tdt = tir_dtype(e.dtype) if e.dtype is not None else (
                "bool" if isinstance(e.value, bool) else "float32" if isinstance(e.value, float) else None)
            lit = literal(e.value, tdt)
            return Val(lit, lit[2:lit.index("(")])
        if isinstance(e, N.Var):
            return self.names[e.name]
        if isinstance(e, N.BlockId):
            return Val(self.block_ids[e.axis] if e.axis < len(self.block_ids) else "T.int32(0)", "int32")
        return self._op(e, t.dtype, (), ())

    def _tile(self, e: N.Expr, t: TileType, idx: tuple[str, ...]) -> Val:
        if isinstance(e, N.TileRef):
            return Val(self.read(e.name, idx), tir_dtype(t.dtype))
        if isinstance(e, N.Broadcast):
            return self.at(e.x, idx, t.shape)
        if isinstance(e, N.Transpose):
            return self.value(e.x, idx[::-1])
        if isinstance(e, N.Iota):
            return cast(Val(idx[e.axis], "int32"), tir_dtype(t.dtype))
        if isinstance(e, N.Full):
            return cast(self.value(e.value), tir_dtype(t.dtype))
        if isinstance(e, N.Reduce):
            raise TileError("internal: a reduction must be computed before the expression using it", e.loc)
        return self._op(e, t.dtype, idx, t.shape)

    # ------------------------------------------------------------------ operators
    def _op(self, e: N.Expr, dt: DType, idx, shape) -> Val:
        rdt = tir_dtype(dt)
        if isinstance(e, N.BinOp):
            a, b = self.at(e.lhs, idx, shape), self.at(e.rhs, idx, shape)
            return self._binop(e, a, b, rdt)
        if isinstance(e, N.Unary):
            return self._unary(e.op, self.at(e.x, idx, shape), rdt)
        if isinstance(e, N.Cast):
            return cast(self.at(e.x, idx, shape), rdt)
        if isinstance(e, N.Where):
            c = cast(self.at(e.cond, idx, shape), "bool")
            cd = compute_dtype(rdt)
            a, b = cast(self.at(e.a, idx, shape), cd), cast(self.at(e.b, idx, shape), cd)
            return _round(Val(f"T.Select({c.text}, {a.text}, {b.text})", cd), rdt)
        raise TileError(f"the TVM backend cannot lower {type(e).__name__} here", getattr(e, "loc", None))

    def _binop(self, e: N.BinOp, a: Val, b: Val, rdt: str) -> Val:
        op = e.op
        if op in ("eq", "ne") and a.text == b.text and is_float(a.dtype):
            # x != x is the NaN test; TVM's simplifier would fold it to false (x == x to true)
            nan = f"T.isnan({a.text})"
            return Val(nan if op == "ne" else f"T.Not({nan})", "bool")
        if op in _CMP:
            cd = _common(a.dtype, b.dtype)
            return Val(f"({cast(a, cd).text} {_CMP[op]} {cast(b, cd).text})", "bool")
        if rdt == "bool" and op in ("and", "or", "xor"):
            a, b = cast(a, "bool"), cast(b, "bool")
            return Val({"and": f"T.And({a.text}, {b.text})", "or": f"T.Or({a.text}, {b.text})",
                        "xor": f"({a.text} != {b.text})"}[op], "bool")
        cd = compute_dtype(rdt)
        x, y = cast(a, cd).text, cast(b, cd).text
        fl = is_float(cd)
        if op in ("add", "sub", "mul"):
            text = f"({x} {'+-*'[('add', 'sub', 'mul').index(op)]} {y})"
        elif op == "div":
            text = f"({x} / {y})" if fl else f"T.truncdiv({x}, {y})"
        elif op == "floordiv":
            text = f"T.floor({x} / {y})" if fl else f"T.truncdiv({x}, {y})"
        elif op == "mod":
            text = f"T.fmod({x}, {y})" if fl else f"T.truncmod({x}, {y})"
        elif op == "cdiv":
            text = f"T.ceil({x} / {y})" if fl else _ceildiv(x, y, e.rhs)
        elif op in ("max", "min", "pow"):
            text = f"T.{op}({x}, {y})"
        elif op in ("and", "or", "xor"):
            text = f"T.bitwise_{op}({x}, {y})"
        elif op in ("shl", "shr"):
            text = f"T.shift_{'left' if op == 'shl' else 'right'}({x}, {y})"
        else:
            raise TileError(f"the TVM backend cannot lower operator '{op}'", e.loc)
        return _round(Val(text, cd), rdt)

    def _unary(self, op: str, a: Val, rdt: str) -> Val:
        cd = compute_dtype(rdt)
        if op == "not":
            v = cast(a, rdt)
            return Val(f"T.Not({v.text})" if rdt == "bool" else f"T.bitwise_not({v.text})", rdt)
        if op in ("neg", "abs"):
            x = cast(a, cd).text
            return _round(Val(f"(-{x})" if op == "neg" else f"T.abs({x})", cd), rdt)
        x = cast(a, "float32").text
        one = "T.float32(1.0)"
        text = {
            "exp": f"T.exp({x})", "exp2": f"T.exp2({x})", "log": f"T.log({x})", "log2": f"T.log2({x})",
            "sqrt": f"T.sqrt({x})", "rsqrt": f"({one} / T.sqrt({x}))", "tanh": f"T.tanh({x})",
            "sigmoid": f"({one} / ({one} + T.exp(-{x})))", "silu": f"({x} / ({one} + T.exp(-{x})))",
            "gelu": f"(T.float32(0.5) * {x} * ({one} + T.erf({x} / T.float32(1.4142135381698608))))",
            "gelu_tanh": f"(T.float32(0.5) * {x} * ({one} + T.tanh(T.float32(0.7978845608028654) * "
                         f"({x} + T.float32(0.044715) * {x} * {x} * {x}))))",
            "sin": f"T.sin({x})", "cos": f"T.cos({x})", "erf": f"T.erf({x})", "recip": f"({one} / {x})",
        }[op]
        return _round(Val(text, "float32"), rdt)


def _round(v: Val, rdt: str) -> Val:
    """Round a value computed in f32 to a narrower result dtype."""
    return v if v.dtype == rdt else Val(f'T.Cast("{rdt}", {v.text})', rdt)


def _common(a: str, b: str) -> str:
    """The dtype two operands are compared in."""
    if is_float(a) or is_float(b):
        return "float32"
    if "int64" in (a, b) or "uint32" in (a, b):
        return "int64"
    return "bool" if a == b == "bool" else "int32"


def _ceildiv(x: str, y: str, rhs: N.Expr) -> str:
    if isinstance(rhs, N.Const) and isinstance(rhs.value, int) and rhs.value > 0:
        return f"T.ceildiv({x}, {y})"
    return f"(-T.floordiv(-{x}, {y}))"  # exact for either sign, like Python's -((-a) // b)


def broadcast_index(idx: tuple[str, ...], out_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[str, ...]:
    """The index into a tile of `shape` that numpy-broadcasts to `idx` of `out_shape`."""
    r = len(shape)
    sub, outs = idx[len(idx) - r:], out_shape[len(out_shape) - r:]
    return tuple("0" if s == 1 and o != 1 else i for s, o, i in zip(shape, outs, sub))
