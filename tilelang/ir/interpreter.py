"""The reference interpreter: runs a typed kernel on the CPU with numpy, block by block.

It is the semantic ground truth every backend is tested against, so it follows
the language's rules literally: windows are masked (reads outside a tensor give
`pad`, writes outside are dropped), arithmetic on f16/bf16/f8 is done in f32 and
rounded to the result dtype, reductions and gemm accumulate in f32, copies convert
to the destination's dtype, sub-byte integers are unpacked from their bit stream.
Layouts do not change values, so they are ignored here.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..diagnostics import TileError
from ..quant import unpack
from . import nodes as N
from .dtypes import DType
from .scalar import binop as scalar_binop
from .types import ScalarType
from .visit import StmtVisitor

_F32 = np.float32


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(_F32)


_UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(_F32(2.0)))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(_F32(0.7978845608028654) * (x + _F32(0.044715) * x * x * x))),
    "sin": np.sin, "cos": np.cos, "erf": _erf, "recip": lambda x: 1.0 / x,
}


def _wide(x: np.ndarray) -> np.ndarray:
    """Operands are computed on in f32 (floats) or int64 (integers)."""
    if x.dtype.kind == "f" or x.dtype.kind == "V" or x.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        return x.astype(_F32)
    if x.dtype.kind in "iu":
        return x.astype(np.int64)
    return x


def _as(x, dt: DType) -> np.ndarray:
    """Convert to `dt` the way a GPU does: round floats to nearest, wrap/truncate toward zero for ints."""
    x = np.asarray(x)
    if dt.is_int and x.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            x = np.trunc(x)
            lo, hi = np.iinfo(dt.numpy).min, np.iinfo(dt.numpy).max
            x = np.clip(np.nan_to_num(x), lo, hi)
    if dt.is_float and x.dtype.kind == "b":
        x = x.astype(_F32)
    if dt.is_int and x.dtype.kind in "iu" and x.dtype.itemsize > dt.numpy.itemsize:
        return x.astype(dt.numpy)  # two's complement wrap
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dt.numpy)


class Interpreter(StmtVisitor):
    """Executes one call of a typed kernel; arrays are numpy and are written in place."""

    where = "the reference interpreter"

    def __init__(self, tk, arrays: dict[str, np.ndarray], scalars: dict[str, Any], dims: dict[str, int]):
        self.tk = tk
        self.kernel: N.Kernel = tk.kernel
        self.arrays = arrays
        self.logical: dict[str, np.ndarray] = {}
        for p in self.kernel.tensors:
            a = arrays[p.name]
            if p.dtype.is_packed:
                length = p.dims[-1] if isinstance(p.dims[-1], int) else dims[p.dims[-1]]
                self.logical[p.name] = unpack(a, p.dtype.bits, length, p.dtype.is_signed)
            else:
                self.logical[p.name] = a
        self.base_env: dict[str, Any] = {**dims, **scalars}
        self.base_env.update({k: v for k, v in tk.consts.items() if isinstance(v, int)})

    def run(self) -> None:
        env = dict(self.base_env)
        grid = [int(self.scalar(g, env, ())) for g in self.kernel.grid]
        for g in grid:
            if g < 0:
                raise TileError(f"negative grid extent {g}", self.kernel.loc)
        for bid in itertools.product(*(range(g) for g in grid)):
            self.block(self.kernel.body, dict(env), bid, {})

    # ------------------------------------------------------------------ statements
    def block(self, body, env, bid, tiles) -> None:
        for s in body:
            self.visit(s, env, bid, tiles)

    def visit_Let(self, s: N.Let, env, bid, tiles) -> None:
        env[s.name] = self.scalar(s.value, env, bid, tiles)

    def visit_Alloc(self, s: N.Alloc, env, bid, tiles) -> None:
        t = self.tk.tiles[s.name]
        init = 0 if s.init is None else self.scalar(s.init, env, bid, tiles)
        tiles[s.name] = _as(np.full(t.shape, init), t.dtype)

    def visit_Assign(self, s: N.Assign, env, bid, tiles) -> None:
        t = self.tk.tiles[s.name]
        v = self.value(s.value, env, bid, tiles)
        tiles[s.name] = _as(np.broadcast_to(v, t.shape), t.dtype).copy()

    def visit_Copy(self, s: N.Copy, env, bid, tiles) -> None:
        self.copy(s, env, bid, tiles)

    def visit_Gemm(self, s: N.Gemm, env, bid, tiles) -> None:
        a, b, acc = tiles[s.a.name], tiles[s.b.name], tiles[s.acc.name]
        a = _wide(a.T if s.trans_a else a)
        b = _wide(b.T if s.trans_b else b)
        t = self.tk.tiles[s.acc.name]
        tiles[s.acc.name] = _as(_wide(acc) + a @ b, t.dtype)

    def visit_Dequant(self, s: N.Dequant, env, bid, tiles) -> None:
        self.dequant(s, env, bid, tiles)

    def visit_AtomicAdd(self, s: N.AtomicAdd, env, bid, tiles) -> None:
        """The add of each element, in f32, rounded to the tensor's dtype (blocks run one at a time here:
        one order of the unordered sum)."""
        t = self.tk.tiles[s.src.name]
        arr, idx, mask, full = self.window(s.dst, t.shape, env, bid, tiles)
        inside = tuple(i[mask] for i in idx)
        p = self.tk.tensor(s.dst.tensor)
        arr[inside] = _as(_wide(arr[inside]) + _wide(tiles[s.src.name]).reshape(full)[mask], p.dtype)

    def visit_For(self, s: N.For, env, bid, tiles) -> None:
        lo, hi = self.scalar(s.start, env, bid, tiles), self.scalar(s.stop, env, bid, tiles)
        for i in range(int(lo), int(hi)):
            env[s.var] = i
            self.block(s.body, env, bid, tiles)

    def visit_ReadScalar(self, s: N.ReadScalar, env, bid, tiles) -> None:
        arr = self.logical[s.src.tensor]
        idx = tuple(int(self.scalar(i, env, bid, tiles)) for i in s.src.indices)
        inside = all(0 <= i < n for i, n in zip(idx, arr.shape))
        env[s.name] = arr[idx].item() if inside else _as(np.asarray(0), self.tk.scalars[s.name].dtype).item()

    def visit_If(self, s: N.If, env, bid, tiles) -> None:
        self.block(s.body if self.scalar(s.cond, env, bid, tiles) else s.orelse, env, bid, tiles)

    def window(self, ref: N.GlobalRef, shape: tuple[int, ...], env, bid, tiles):
        """Index arrays and an in-bounds mask for a window (tile indices or element offsets)."""
        arr = self.logical[ref.tensor]
        full = (1,) * (arr.ndim - len(shape)) + tuple(shape)
        starts, bounds = [], []
        for i, e, n in zip(ref.indices, full, arr.shape):
            if isinstance(i, N.ElemOffset):
                starts.append(int(self.scalar(i.start, env, bid, tiles)))
                bounds.append(n if i.stop is None else min(n, int(self.scalar(i.stop, env, bid, tiles))))
            else:
                starts.append(int(self.scalar(i, env, bid, tiles)) * e)
                bounds.append(n)
        ranges = [np.arange(s, s + e) for s, e in zip(starts, full)]
        grids = np.meshgrid(*ranges, indexing="ij")
        mask = np.ones(full, bool)
        for g, n in zip(grids, bounds):
            mask &= (g >= 0) & (g < n)
        clipped = tuple(np.clip(g, 0, max(n - 1, 0)) for g, n in zip(grids, arr.shape))
        return arr, clipped, mask, full

    def copy(self, s: N.Copy, env, bid, tiles) -> None:
        if isinstance(s.src, N.GlobalRef):
            t = self.tk.tiles[s.dst.name]
            arr, idx, mask, full = self.window(s.src, t.shape, env, bid, tiles)
            pad = 0 if s.pad is None else self.scalar(s.pad, env, bid, tiles)
            vals = arr[idx] if arr.size else np.zeros(full, arr.dtype)
            vals = np.where(mask, _wide(np.asarray(vals)), pad)
            tiles[s.dst.name] = _as(vals.reshape(t.shape), t.dtype)
        elif isinstance(s.dst, N.GlobalRef):
            t = self.tk.tiles[s.src.name]
            arr, idx, mask, full = self.window(s.dst, t.shape, env, bid, tiles)
            p = self.tk.tensor(s.dst.tensor)
            vals = _as(_wide(tiles[s.src.name]).reshape(full), p.dtype)
            arr[tuple(i[mask] for i in idx)] = vals[mask]
        else:
            t = self.tk.tiles[s.dst.name]
            tiles[s.dst.name] = _as(_wide(tiles[s.src.name]), t.dtype)

    def dequant(self, s: N.Dequant, env, bid, tiles) -> None:
        t = self.tk.tiles[s.dst.name]
        arr, idx, mask, full = self.window(s.src, t.shape, env, bid, tiles)
        q = np.where(mask, arr[idx] if arr.size else 0, 0).astype(_F32)
        group = int(self.scalar(s.group, env, bid, tiles))
        if group < 1:
            raise TileError(f"group size {group} must be positive", s.group.loc)
        gidx = idx[:-1] + (idx[-1] // group,)
        scale = self.logical[s.scale]
        sv = _wide(scale[tuple(np.clip(g, 0, n - 1) for g, n in zip(gidx, scale.shape))])
        zv = 0.0
        if s.zero is not None:
            zero = self.logical[s.zero]
            zv = _wide(zero[tuple(np.clip(g, 0, n - 1) for g, n in zip(gidx, zero.shape))]).astype(_F32)
        w = np.where(mask, (q - zv) * sv, 0.0)
        tiles[s.dst.name] = _as(w.reshape(t.shape), t.dtype)

    # ------------------------------------------------------------------ expressions
    def scalar(self, e: N.Expr, env, bid, tiles=None):
        if isinstance(e, N.Const):
            return e.value
        if isinstance(e, N.Var):
            return env[e.name]
        if isinstance(e, N.BlockId):
            return bid[e.axis] if e.axis < len(bid) else 0
        if isinstance(e, N.BinOp):
            a, b = self.scalar(e.lhs, env, bid, tiles), self.scalar(e.rhs, env, bid, tiles)
            if e.op in ("floordiv", "mod", "cdiv") and b == 0:
                raise TileError("division by zero", e.loc)
            return scalar_binop(e.op, a, b)
        if isinstance(e, N.Unary):
            x = self.scalar(e.x, env, bid, tiles)
            if e.op == "neg":
                return -x
            if e.op == "not":
                return not x if isinstance(x, bool) else ~x
            return float(_UNARY[e.op](np.float32(x)))
        if isinstance(e, N.Cast):
            x = self.scalar(e.x, env, bid, tiles)
            return _as(np.asarray(x), e.dtype).item()
        if isinstance(e, N.Where):
            c = self.scalar(e.cond, env, bid, tiles)
            return self.scalar(e.a if c else e.b, env, bid, tiles)
        raise TileError(f"{type(e).__name__} is not a scalar", e.loc)

    def value(self, e: N.Expr, env, bid, tiles):
        """Evaluate a tile expression to an array of its inferred dtype."""
        t = self.tk.type_of(e)
        if isinstance(t, ScalarType):
            return self.scalar(e, env, bid, tiles)
        if isinstance(e, N.TileRef):
            return tiles[e.name]
        if isinstance(e, N.BinOp):
            a, b = self.operand(e.lhs, env, bid, tiles), self.operand(e.rhs, env, bid, tiles)
            return _as(_tile_binop(e.op, a, b), t.dtype)
        if isinstance(e, N.Unary):
            x = self.operand(e.x, env, bid, tiles)
            if e.op == "not":
                return _as(np.logical_not(x) if x.dtype == bool else np.invert(x), t.dtype)
            with np.errstate(all="ignore"):
                return _as(_UNARY[e.op](x), t.dtype)
        if isinstance(e, N.Cast):
            return _as(self.operand(e.x, env, bid, tiles), t.dtype)
        if isinstance(e, N.Where):
            c = self.operand(e.cond, env, bid, tiles)
            return _as(np.where(c, self.operand(e.a, env, bid, tiles), self.operand(e.b, env, bid, tiles)), t.dtype)
        if isinstance(e, N.Reduce):
            x = self.operand(e.x, env, bid, tiles)
            fn = {"sum": np.sum, "max": np.max, "min": np.min}[e.op]
            return _as(fn(x, axis=e.axis, keepdims=True), t.dtype)
        if isinstance(e, N.Broadcast):
            return np.broadcast_to(self.value(e.x, env, bid, tiles), t.shape)
        if isinstance(e, N.Iota):
            shape = [1] * len(t.shape)
            shape[e.axis] = t.shape[e.axis]
            return np.broadcast_to(np.arange(t.shape[e.axis], dtype=np.int32).reshape(shape), t.shape)
        if isinstance(e, N.Full):
            return _as(np.full(t.shape, self.scalar(e.value, env, bid, tiles)), t.dtype)
        if isinstance(e, N.Transpose):
            return self.value(e.x, env, bid, tiles).T
        raise TileError(f"cannot evaluate {type(e).__name__}", e.loc)

    def operand(self, e, env, bid, tiles):
        v = self.value(e, env, bid, tiles)
        return _wide(np.asarray(v))


def _tile_binop(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ints = a.dtype.kind in "iub" and b.dtype.kind in "iub"
    with np.errstate(all="ignore"):
        if op in ("floordiv", "mod", "cdiv") and ints:
            if np.any(b == 0):
                raise TileError("integer division by zero in a tile expression")
            q = np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))
            if op == "floordiv":
                return q
            if op == "mod":
                return a - b * q
            return -((-a) // b)
        fns = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
               "floordiv": np.floor_divide, "mod": np.fmod, "max": np.maximum, "min": np.minimum,
               "pow": np.power, "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
               "eq": np.equal, "ne": np.not_equal, "and": np.bitwise_and, "or": np.bitwise_or,
               "xor": np.bitwise_xor, "shl": np.left_shift, "shr": np.right_shift}
        return fns[op](a, b)


def run_typed(tk, arrays: dict[str, np.ndarray], scalars: dict[str, Any], dims: dict[str, int]) -> None:
    Interpreter(tk, arrays, scalars, dims).run()
