"""Scalar and tile expressions as Triton expressions, with the reference interpreter's arithmetic.

The interpreter (tilelang/ir/interpreter.py) defines the semantics; Triton's own
promotion rules differ, so the code states every conversion:
* float tile arithmetic runs in f32 and is rounded to the result dtype after each
  operation (`(x.to(tl.float32) + y.to(tl.float32)).to(tl.float16)`);
* integer tile arithmetic runs in a type wide enough for every operand (i32, or i64
  for u32/i64) and wraps to the result dtype, as the interpreter's int64 does;
* `/` and `sqrt` round correctly (`tl.div_rn`, `tl.sqrt_rn`; Triton's `/` is approximate);
  the other float functions use Triton's fast approximations;
* integer `//` and `%` truncate toward zero.  Triton does so on tensors, but a
  value that is a compile-time Python int (a loop index in the interpreter, an
  argument equal to 1 in compiled code) would floor, so a left operand that may
  be negative is made a tensor first with `tl.cast`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.dtypes import DType, bool_, f32, i32, i64
from ...ir.interpreter import _as as convert_like_interpreter
from ...ir.types import ScalarType, TileType
from ...ir.visit import sub_exprs
from ..text import encloses
from .names import Names

TL_DTYPES = {"f32": "tl.float32", "f16": "tl.float16", "bf16": "tl.bfloat16", "f8e4m3": "tl.float8e4nv",
             "f8e5m2": "tl.float8e5", "i8": "tl.int8", "u8": "tl.uint8", "i32": "tl.int32",
             "u32": "tl.uint32", "i64": "tl.int64", "bool": "tl.int1"}

_PY_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "lt": "<",
           "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "&", "or": "|", "xor": "^",
           "shl": "<<", "shr": ">>"}

# Float functions of one argument `x` (bound to a name where used twice), evaluated in f32.
_TANH = "(1.0 - 2.0 / (tl.exp(2.0 * {x}) + 1.0))"
_FLOAT_FNS = {
    "exp": "tl.exp({x})", "exp2": "tl.exp2({x})", "log": "tl.log({x})", "log2": "tl.log2({x})",
    "sqrt": "tl.sqrt_rn({x})", "rsqrt": "tl.rsqrt({x})", "sin": "tl.sin({x})", "cos": "tl.cos({x})",
    "erf": "tl.erf({x})", "recip": "tl.div_rn(1.0, {x})", "tanh": _TANH,
    "sigmoid": "(1.0 / (1.0 + tl.exp(-{x})))", "silu": "({x} / (1.0 + tl.exp(-{x})))",
    "gelu": "(0.5 * {x} * (1.0 + tl.erf({x} / 1.4142135623730951)))",
    "gelu_tanh": "(0.5 * {x} * (1.0 + " + _TANH.format(x="(0.7978845608028654 * ({x} + 0.044715 * {x} * {x} * {x}))") + "))",
}


def tl_dtype(dt: DType) -> str:
    if dt.name not in TL_DTYPES:
        raise TileError(f"the Triton backend has no element type for {dt}")
    return TL_DTYPES[dt.name]


def wide(dt: DType) -> DType:
    """The type the interpreter's arithmetic on `dt` is exact in (up to the final wrap)."""
    if dt.is_float:
        return f32
    if dt == bool_:
        return bool_
    return i64 if dt.bits > 32 or (dt.bits == 32 and not dt.is_signed) else i32


def literal(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v) if v >= 0 else f"({v})"
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else '(-float("inf"))'
    return repr(float(v)) if v >= 0 else f"({float(v)!r})"


def strip_parens(code: str) -> str:
    """`(a + b)` -> `a + b` where the outer parentheses enclose the whole expression."""
    return code[1:-1] if encloses(code) else code


def paren(code: str) -> str:
    """`code` as an operand of a postfix like `.to(...)`: parenthesized unless it is one atom."""
    depth = 0
    for ch in code:
        depth += ch in "(["
        depth -= ch in ")]"
        if depth == 0 and ch in " +-*/%<>=&|^~,":
            return f"({code})"
    return code


@dataclass(frozen=True)
class Val:
    """Generated code and the tilelang type of its value (Triton's type, for tiles)."""
    code: str
    dtype: DType
    tile: bool
    literal: bool = False  # a Python literal: Triton types it by its partner


def const_value(e: N.Expr):
    """The Python value of a constant scalar expression, or None."""
    if isinstance(e, N.Const):
        return e.value
    if isinstance(e, N.Unary) and e.op == "neg":
        v = const_value(e.x)
        return None if v is None or isinstance(v, bool) else -v
    return None


def check_pow2(shape: tuple[int, ...], what: str, loc) -> None:
    bad = [s for s in shape if s & (s - 1)]
    if bad:
        raise TileError(f"{what} has shape {list(shape)}; the Triton backend needs every tile extent to be a "
                        f"power of two ({bad[0]} is not)", loc,
                        hint="choose power-of-two tile sizes (16, 32, 64, ...); windows past a tensor's edge are "
                             "masked, so the tensor itself may have any size")


class Emitter:
    """Collects the lines of a kernel body and turns expressions into code."""

    def __init__(self, tk, names: Names):
        self.tk = tk
        self.names = names
        self.lines: list[str] = []
        self.depth = 0
        self._count = 0
        self.nonneg: set[str] = set(tk.kernel.dim_symbols)  # scalar names known to be >= 0
        self.tensors: set[str] = set()  # scalar lets derived from block ids

    # ------------------------------------------------------------------ output
    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"_{stem}{self._count}"

    def bind(self, code: str, stem: str = "v") -> str:
        """A name holding `code` (the code itself if it is a name already)."""
        if code.isidentifier():
            return code
        name = self.fresh(stem)
        self.line(f"{name} = {strip_parens(code)}")
        return name

    # ------------------------------------------------------------------ facts about scalars
    def is_nonneg(self, e: N.Expr) -> bool:
        if isinstance(e, N.Const):
            return isinstance(e.value, (int, float)) and e.value >= 0
        if isinstance(e, N.Var):
            return e.name in self.nonneg
        if isinstance(e, N.BlockId):
            return True
        if isinstance(e, N.BinOp):
            if e.op in ("add", "mul", "floordiv", "mod", "cdiv", "min", "shr", "and", "or", "xor"):
                return self.is_nonneg(e.lhs) and self.is_nonneg(e.rhs)
            if e.op == "max":
                return self.is_nonneg(e.lhs) or self.is_nonneg(e.rhs)
        return False

    def is_tensor(self, e: N.Expr) -> bool:
        """Whether the scalar is a Triton tensor in compiled and interpreted code alike (not a Python int)."""
        return any(isinstance(x, N.BlockId) and x.axis < len(self.tk.kernel.grid)
                   or isinstance(x, N.Var) and x.name in self.tensors for x in sub_exprs(e))

    @staticmethod
    def is_positive_const(e: N.Expr) -> bool:
        return isinstance(e, N.Const) and not isinstance(e.value, bool) and isinstance(e.value, int) and e.value > 0

    # ------------------------------------------------------------------ expressions
    def expr(self, e: N.Expr) -> Val:
        t = self.tk.type_of(e)
        if isinstance(t, ScalarType):
            return self._scalar(e, t)
        fn = getattr(self, "_tile_" + type(e).__name__.lower(), None)
        if fn is None:
            raise TileError(f"the Triton backend cannot lower {type(e).__name__} here", e.loc)
        return fn(e, t)

    def scalar_const(self, e: N.Expr, dt: DType) -> str:
        """Code for a scalar converted to `dt` the interpreter's way (folded where constant)."""
        v = const_value(e)
        if v is not None:
            return literal(convert_like_interpreter(v, dt).item())
        x = self.expr(e)
        return x.code if x.dtype == dt else f"tl.cast({x.code}, {tl_dtype(dt)})"

    # ------------------------------------------------------------------ scalars
    def _scalar(self, e: N.Expr, t: ScalarType) -> Val:
        if isinstance(e, N.Const):
            return Val(literal(e.value), t.dtype, False, literal=True)
        if isinstance(e, N.Var):
            return Val(self.names[e.name], t.dtype, False)
        if isinstance(e, N.BlockId):
            grid = len(self.tk.kernel.grid)
            return Val(f"tl.program_id({e.axis})" if e.axis < grid else "0", i32, False, literal=e.axis >= grid)
        if isinstance(e, N.BinOp):
            return self._scalar_binop(e, t)
        if isinstance(e, N.Unary):
            x = self.expr(e.x)
            if e.op == "neg":
                return Val(f"(-{x.code})", t.dtype, False)
            if e.op == "not":
                return Val(f"({x.code} == 0)" if x.dtype == bool_ else f"(~{x.code})", t.dtype, False)
            if e.op == "abs":
                return Val(f"tl.abs({x.code})", t.dtype, False)
            return Val(self._float_fn(e.op, f"tl.cast({x.code}, tl.float32)"), t.dtype, False)
        if isinstance(e, N.Cast):
            x = self.expr(e.x)
            if t.dtype == bool_:
                return Val(f"({x.code} != 0)", t.dtype, False)
            return Val(f"tl.cast({x.code}, {tl_dtype(t.dtype)})", t.dtype, False)
        if isinstance(e, N.Where):
            c, a, b = self.expr(e.cond), self.expr(e.a), self.expr(e.b)
            return Val(f"tl.where({c.code}, {a.code}, {b.code})", t.dtype, False)
        raise TileError(f"the Triton backend cannot lower scalar {type(e).__name__}", e.loc)

    def _scalar_binop(self, e: N.BinOp, t: ScalarType) -> Val:
        a, b = self.expr(e.lhs), self.expr(e.rhs)
        ints = a.dtype.is_int and b.dtype.is_int
        op = e.op
        if op in ("floordiv", "mod", "cdiv") and ints:
            if self.is_nonneg(e.lhs) and self.is_positive_const(e.rhs):
                if op == "cdiv":
                    return Val(f"tl.cdiv({a.code}, {b.code})", t.dtype, False)
                return Val(f"({a.code} {_PY_OPS[op]} {b.code})", t.dtype, False)
            x = a.code if self.is_tensor(e.lhs) else f"tl.cast({a.code}, {tl_dtype(wide(t.dtype))})"
            if op != "cdiv":
                return Val(f"({x} {_PY_OPS[op]} {b.code})", t.dtype, False)
            return Val(self._int_cdiv(x, b.code), t.dtype, False)
        if op in ("floordiv", "mod"):  # floats: floor(a / b), fmod
            if op == "floordiv":
                return Val(f"tl.floor({a.code} / {b.code})", t.dtype, False)
            return Val(f"(tl.cast({a.code}, tl.float32) % {b.code})", t.dtype, False)
        if op == "cdiv":
            raise TileError("cdiv(...) takes integers", e.loc)
        if op in ("max", "min"):
            return Val(f"tl.{op}imum({a.code}, {b.code})", t.dtype, False)
        if op == "pow":
            return Val(self._pow(a.code, b.code, e.rhs), t.dtype, False)
        return Val(f"({a.code} {_PY_OPS[op]} {b.code})", t.dtype, False)

    def _float_fn(self, op: str, x: str) -> str:
        pattern = _FLOAT_FNS[op]
        if pattern.count("{x}") > 1:
            x = self.bind(x, "x")
        elif "({x})" in pattern or ", {x})" in pattern:  # a whole call argument
            x = strip_parens(x)
        return pattern.format(x=x)

    def _int_cdiv(self, a: str, b: str) -> str:
        """ceil(a / b) for integers of any sign, `a` a tensor (truncating division)."""
        a = self.bind(a, "n")
        b = b if b.lstrip("(-").rstrip(")").isdigit() else self.bind(b, "d")
        q = self.bind(f"{a} // {b}", "q")
        return f"({q} + (({a} - {q} * {b} != 0) & (({a} < 0) == ({b} < 0))).to({q}.dtype))"

    def _pow(self, a: str, b: str, exponent: N.Expr) -> str:
        """a ** b in f32 as exp2(b * log2|a|), with the sign and NaN of a negative base like numpy's."""
        x = self.bind(a, "b")
        v = const_value(exponent)
        if v is not None:
            if v == 0:
                return "1.0"
            if float(v).is_integer() and abs(v) <= 4:  # a few multiplications, as exact as the interpreter's pow
                prod = " * ".join([x] * int(abs(v)))
                return f"({prod})" if v > 0 else f"(1.0 / ({prod}))"
            mag = f"tl.exp2({literal(float(v))} * tl.log2(tl.abs({x})))"
            if not float(v).is_integer():
                return f'tl.where({x} < 0.0, float("nan"), {mag})'
            return mag if v % 2 == 0 else f"tl.where({x} < 0.0, -{mag}, {mag})"
        y = self.bind(b, "e")
        mag = self.bind(f"tl.exp2({y} * tl.log2(tl.abs({x})))", "p")
        is_int = self.bind(f"{y} == tl.floor({y})", "i")
        odd = f"{is_int} & (tl.abs({y} % 2.0) == 1.0)"
        neg = f'tl.where({is_int}, tl.where({odd}, -{mag}, {mag}), float("nan"))'
        return f"tl.where({y} == 0.0, 1.0, tl.where({x} < 0.0, {neg}, {mag}))"

    # ------------------------------------------------------------------ tiles
    def widen(self, v: Val, to: DType) -> str:
        """`v` in the compute type `to`; scalars are left to Triton's promotion."""
        if v.tile and v.dtype != to:
            return f"{paren(v.code)}.to({tl_dtype(to)})"
        return v.code

    @staticmethod
    def result_type(compute: DType, *vals: Val) -> DType:
        """Triton's type for arithmetic in `compute`: a non-literal scalar wider than it widens it."""
        if compute.is_int and any(not v.tile and not v.literal and v.dtype.bits > compute.bits for v in vals):
            return i64
        return compute

    @staticmethod
    def narrow(code: str, have: DType, want: DType) -> str:
        return code if have == want else f"{paren(code)}.to({tl_dtype(want)})"

    def _tile_tileref(self, e: N.TileRef, t: TileType) -> Val:
        return Val(self.names[e.name], t.dtype, True)

    def _tile_binop(self, e: N.BinOp, t: TileType) -> Val:
        a, b = self.expr(e.lhs), self.expr(e.rhs)
        src = a.dtype if a.tile else b.dtype
        compute = wide(src)
        x, y = self.widen(a, compute), self.widen(b, compute)
        op = e.op
        have = self.result_type(compute, a, b)
        if op in N.COMPARISONS:
            return Val(f"({x} {_PY_OPS[op]} {y})", bool_, True)
        if compute.is_float:
            if op == "floordiv":
                code = f"tl.floor({x} / {y})"
            elif op == "cdiv":
                raise TileError("cdiv(...) takes integer tiles", e.loc)
            elif op in ("max", "min"):
                code = f"tl.{op}imum({x}, {y}, propagate_nan=tl.PropagateNan.ALL)"
            elif op == "pow":
                code = self._pow(x, y, e.rhs)
            elif op == "div":  # both operands f32: an integer scalar is converted first
                x, y = (c if v.tile or v.dtype == f32 else f"tl.cast({c}, tl.float32)" for v, c in ((a, x), (b, y)))
                code = f"tl.div_rn({x}, {y})"
            else:
                code = f"({x} {_PY_OPS[op]} {y})"
        elif op == "cdiv":
            code = self._int_cdiv(x, y)
        elif op in ("max", "min"):
            code = f"tl.{op}imum({x}, {y})"
        else:
            code = f"({x} {_PY_OPS[op]} {y})"
        return Val(self.narrow(code, have, t.dtype), t.dtype, True)

    def _tile_unary(self, e: N.Unary, t: TileType) -> Val:
        x = self.expr(e.x)
        if e.op == "not":
            return Val(f"({x.code} == 0)" if x.dtype == bool_ else f"(~{x.code})", t.dtype, True)
        compute = wide(t.dtype)
        xw = self.widen(x, compute)
        if e.op == "neg":
            code = f"(-{xw})"
        elif e.op == "abs":
            code = f"tl.abs({xw})"
        else:
            code = self._float_fn(e.op, xw)
        return Val(self.narrow(code, compute, t.dtype), t.dtype, True)

    def _tile_cast(self, e: N.Cast, t: TileType) -> Val:
        x = self.expr(e.x)
        if x.dtype == t.dtype:
            return Val(x.code, t.dtype, True)
        if t.dtype == bool_:
            return Val(f"({x.code} != 0)", t.dtype, True)
        return Val(f"{paren(x.code)}.to({tl_dtype(t.dtype)})", t.dtype, True)

    def _tile_where(self, e: N.Where, t: TileType) -> Val:
        c, a, b = self.expr(e.cond), self.expr(e.a), self.expr(e.b)
        if a.tile and b.tile and a.dtype == b.dtype == t.dtype:  # a pure selection: no arithmetic to widen
            return Val(f"tl.where({c.code}, {a.code}, {b.code})", t.dtype, True)
        compute = wide(t.dtype)
        code = f"tl.where({c.code}, {self.widen(a, compute)}, {self.widen(b, compute)})"
        return Val(self.narrow(code, self.result_type(compute, a, b), t.dtype), t.dtype, True)

    def _tile_reduce(self, e: N.Reduce, t: TileType) -> Val:
        x = self.expr(e.x)
        compute = wide(t.dtype) if e.op == "sum" or t.dtype.is_float else t.dtype  # max/min are exact anyway
        code = f"tl.{e.op}({self.widen(x, compute)}, axis={e.axis}, keep_dims=True)"
        return Val(self.narrow(code, compute, t.dtype), t.dtype, True)

    def _tile_broadcast(self, e: N.Broadcast, t: TileType) -> Val:
        check_pow2(t.shape, "broadcast(...)", e.loc)
        x = self.expr(e.x)
        if self.tk.type_of(e.x).shape == t.shape:
            return x
        return Val(f"tl.broadcast_to({x.code}, {tuple(t.shape)})", t.dtype, True)

    def _tile_iota(self, e: N.Iota, t: TileType) -> Val:
        check_pow2(t.shape, "iota(...)", e.loc)
        code = f"tl.arange(0, {t.shape[e.axis]})" + expand(e.axis, len(t.shape))
        if any(s != 1 for i, s in enumerate(t.shape) if i != e.axis):
            code = f"tl.broadcast_to({code}, {tuple(t.shape)})"
        return Val(code, i32, True)

    def _tile_full(self, e: N.Full, t: TileType) -> Val:
        check_pow2(t.shape, "full(...)", e.loc)
        return Val(self.fill(t.shape, e.value, t.dtype), t.dtype, True)

    def _tile_transpose(self, e: N.Transpose, t: TileType) -> Val:
        return Val(f"tl.trans({self.expr(e.x).code})", t.dtype, True)

    def fill(self, shape: tuple[int, ...], value: N.Expr | None, dt: DType) -> str:
        if value is None or const_value(value) == 0:
            return f"tl.zeros({tuple(shape)}, {tl_dtype(dt)})"
        return f"tl.full({tuple(shape)}, {self.scalar_const(value, dt)}, {tl_dtype(dt)})"


def expand(axis: int, rank: int) -> str:
    """Index that makes a 1-d vector run along `axis` of a rank-`rank` block: `[:, None]`."""
    if rank == 1:
        return ""
    return "[" + ", ".join(":" if i == axis else "None" for i in range(rank)) + "]"
