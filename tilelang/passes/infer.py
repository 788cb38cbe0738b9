"""Shape and dtype inference: give every tile and expression of a specialized kernel a type.

Rules, in short (docs/LANGUAGE.md has them in full):
* tile (op) tile: dtypes must match; shapes broadcast numpy-style (right-aligned,
  extent 1 stretches).  An untyped literal or a scalar takes the tile's dtype.
* comparisons give `bool` tiles; `&`, `|`, `^` need bool or integer operands.
* float math (`exp`, `rsqrt`, ...) needs float operands: cast integers first.
* a reduction keeps the reduced axis with extent 1.
Every violation is a TileError at the expression's location.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import TileError
from ..ir import nodes as N
from ..ir.dtypes import DType, bool_, f32, i32
from ..ir.types import ScalarType, TileType, Type
from ..ir.visit import walk_stmts
from .specialize import ConstValue

_FLOAT_UNARY = {"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "tanh", "sigmoid", "silu", "gelu",
                "gelu_tanh", "sin", "cos", "erf", "recip"}
_LOGICAL = {"and", "or", "xor"}


@dataclass
class TypedKernel:
    """A specialized kernel with the type of every tile, scalar and expression."""
    kernel: N.Kernel
    consts: dict[str, ConstValue]
    tiles: dict[str, TileType]
    scalars: dict[str, ScalarType]
    _cache: dict = field(default_factory=dict, repr=False)
    plans: dict = field(default_factory=dict, repr=False, compare=False)  # target -> LayoutPlan (layout/infer.py)

    def type_of(self, e: N.Expr) -> Type:
        t = self._cache.get(e)
        if t is None:
            t = _infer_expr(self, e)
            self._cache[e] = t
        return t

    def tensor(self, name: str) -> N.TensorParam:
        p = self.kernel.param(name)
        assert isinstance(p, N.TensorParam)
        return p

    @property
    def threads(self) -> int:
        return self.kernel.threads.value  # type: ignore[union-attr]


def infer(kernel: N.Kernel, consts: dict[str, ConstValue]) -> TypedKernel:
    tk = TypedKernel(kernel, dict(consts), {}, {})
    for p in kernel.params:
        if isinstance(p, N.ScalarParam):
            tk.scalars[p.name] = ScalarType(p.dtype)
    for d in kernel.dim_symbols:
        tk.scalars[d] = ScalarType(i32)
    for g in kernel.grid:
        _expect_int_scalar(tk, g, "a grid extent")
    _const_int(kernel.threads, "the thread count")
    _check_body(tk, kernel.body)
    return tk


def _const_int(e: N.Expr, what: str) -> int:
    if isinstance(e, N.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return e.value
    raise TileError(f"{what} must be known at compile time", e.loc,
                    hint="use integer literals and const parameters only")


def _expect_int_scalar(tk: TypedKernel, e: N.Expr, what: str) -> None:
    t = tk.type_of(e)
    if not isinstance(t, ScalarType) or not (t.dtype.is_int or t.weak and t.dtype.is_int):
        raise TileError(f"{what} must be an integer scalar, got {t}", e.loc)


def _check_body(tk: TypedKernel, body: tuple[N.Stmt, ...]) -> None:
    for s in body:
        if isinstance(s, N.Let):
            t = tk.type_of(s.value)
            tk.scalars[s.name] = ScalarType(t.dtype)  # type: ignore[union-attr]
        elif isinstance(s, N.Alloc):
            shape = _shape(s.shape, "a tile extent")
            if s.dtype.is_packed:
                raise TileError(f"tiles cannot have packed dtype {s.dtype}", s.loc,
                                hint="load packed weights into an i8/u8 tile, or use dequant(...)")
            if s.init is not None and not isinstance(tk.type_of(s.init), ScalarType):
                raise TileError("a tile's initial value must be a scalar", s.init.loc)
            tk.tiles[s.name] = TileType(shape, s.dtype, s.scope)
        elif isinstance(s, N.Assign):
            vt = tk.type_of(s.value)
            if not isinstance(vt, TileType):
                raise TileError("the value is a scalar, not a tile", s.value.loc)
            if s.define:
                tk.tiles[s.name] = TileType(vt.shape, vt.dtype, "register")
            else:
                tt = tk.tiles[s.name]
                if vt.dtype != tt.dtype:
                    raise TileError(f"assigning a {vt.dtype} value to '{s.name}', a {tt}", s.loc,
                                    hint=f"cast the value: {tt.dtype}(...)")
                if _broadcast(tt.shape, vt.shape) != tt.shape:
                    raise TileError(f"a value of shape {list(vt.shape)} does not fit '{s.name}' of shape "
                                    f"{list(tt.shape)}", s.loc)
        elif isinstance(s, N.Copy):
            _check_copy(tk, s)
        elif isinstance(s, N.Gemm):
            _check_gemm(tk, s)
        elif isinstance(s, N.Dequant):
            _check_dequant(tk, s)
        elif isinstance(s, N.ReadScalar):
            _check_read_scalar(tk, s)
        elif isinstance(s, N.If):
            ct = tk.type_of(s.cond)
            if not isinstance(ct, ScalarType):
                raise TileError(f"an if condition must be a scalar, got {ct}", s.cond.loc,
                                hint="choose per element with where(cond, a, b)")
            if ct.dtype.is_float:
                raise TileError(f"an if condition must be a bool or an integer, got {ct}", s.cond.loc,
                                hint="compare it, e.g. if x > 0.0 { ... }")
            _check_body(tk, s.body)
            _check_body(tk, s.orelse)
        elif isinstance(s, N.AtomicAdd):
            _check_atomic_add(tk, s)
        elif isinstance(s, N.For):
            _expect_int_scalar(tk, s.start, "a loop bound")
            _expect_int_scalar(tk, s.stop, "a loop bound")
            if s.stages is not None and _const_int(s.stages, "the stage count") < 1:
                raise TileError("the stage count must be at least 1", s.stages.loc)
            tk.scalars[s.var] = ScalarType(i32)
            _check_body(tk, s.body)


def _shape(dims: tuple[N.Expr, ...], what: str) -> tuple[int, ...]:
    out = []
    for d in dims:
        v = _const_int(d, what)
        if v < 1:
            raise TileError(f"{what} must be positive, got {v}", d.loc)
        out.append(v)
    if not out:
        raise TileError("a tile needs at least one dim", None)
    return tuple(out)


def _check_read_scalar(tk: TypedKernel, s: N.ReadScalar) -> None:
    t = tk.tensor(s.src.tensor)
    if t.dtype.is_packed or t.storage != "plain":
        raise TileError(f"cannot read a scalar from packed tensor '{t.name}'", s.src.loc,
                        hint="scalars are read from plain tensors (i32, i64, f32, ...)")
    for i in s.src.indices:
        _expect_int_scalar(tk, i, "an element index")
    tk.scalars[s.name] = ScalarType(t.dtype)


def _window(tk: TypedKernel, ref: N.GlobalRef, tile: TileType) -> None:
    t = tk.tensor(ref.tensor)
    for i in ref.indices:
        if isinstance(i, N.ElemOffset):
            _expect_int_scalar(tk, i.start, "a window's element offset")
            if i.stop is not None:
                _expect_int_scalar(tk, i.stop, "a window's stop")
            continue
        _expect_int_scalar(tk, i, "a tile index")
    if len(tile.shape) > len(t.dims):
        raise TileError(f"a {len(tile.shape)}-d tile does not fit {len(t.dims)}-d tensor '{t.name}'", ref.loc)


def _check_copy(tk: TypedKernel, s: N.Copy) -> None:
    sides = [s.src, s.dst]
    tiles = [tk.tiles[x.name] for x in sides if isinstance(x, N.TileRef)]
    if len(tiles) == 2 and tiles[0].shape != tiles[1].shape:
        raise TileError(f"copy between tiles of shapes {list(tiles[0].shape)} and {list(tiles[1].shape)}", s.loc)
    for x in sides:
        if isinstance(x, N.GlobalRef):
            _window(tk, x, tiles[0])
            if x is s.dst and tk.tensor(x.tensor).dtype.is_packed:
                raise TileError(f"cannot store into packed tensor '{x.tensor}'", s.loc,
                                hint="pack weights on the host with tilelang.quant.pack")
            offset = next((i for i in x.indices if isinstance(i, N.ElemOffset)), None)
            if offset is not None and tk.tensor(x.tensor).dtype.is_packed:
                raise TileError(f"windows of packed tensor '{x.tensor}' are tile-indexed; an element offset is "
                                "not supported here", offset.loc, hint="index the window by tiles, e.g. Q[i, j]")
    if s.pad is not None and not isinstance(tk.type_of(s.pad), ScalarType):
        raise TileError("pad must be a scalar", s.pad.loc)


ATOMIC_DTYPES = ("f32", "f16", "bf16")
"""The tensor dtypes atomic_add adds into (the widths GPUs add atomically)."""


def _check_atomic_add(tk: TypedKernel, s: N.AtomicAdd) -> None:
    t = tk.tiles[s.src.name]
    _window(tk, s.dst, t)
    p = tk.tensor(s.dst.tensor)
    if p.dtype.name not in ATOMIC_DTYPES:
        raise TileError(f"atomic_add into '{p.name}', a {p.dtype} tensor: atomics add into "
                        f"{', '.join(ATOMIC_DTYPES)}", s.dst.loc, hint="accumulate into an f32 tensor")
    if not t.dtype.is_float:
        raise TileError(f"atomic_add of '{s.src.name}', a {t.dtype} tile: it adds float tiles", s.src.loc,
                        hint=f"cast it: f32({s.src.name}) in a tile of its own")


def _check_gemm(tk: TypedKernel, s: N.Gemm) -> None:
    a, b, c = (tk.tiles[x.name] for x in (s.a, s.b, s.acc))
    for t, x in ((a, s.a), (b, s.b), (c, s.acc)):
        if len(t.shape) != 2:
            raise TileError(f"gemm operands are 2-d; '{x.name}' is {list(t.shape)}", x.loc)
    (m, k) = a.shape[::-1] if s.trans_a else a.shape
    (k2, n) = b.shape[::-1] if s.trans_b else b.shape
    if k != k2 or c.shape != (m, n):
        raise TileError(f"gemm shapes do not agree: a is {m}x{k}, b is {k2}x{n}, acc is "
                        f"{c.shape[0]}x{c.shape[1]}", s.loc,
                        hint="acc[M, N] += a[M, K] @ b[K, N]; use trans_a=/trans_b= for transposed operands")
    if not (a.dtype.is_float and b.dtype.is_float) or a.dtype != b.dtype:
        raise TileError(f"gemm operands must share one float dtype, got {a.dtype} and {b.dtype}", s.loc,
                        hint="cast one operand, e.g. b = f16(b)")
    if not c.dtype.is_float:
        raise TileError(f"the gemm accumulator must be a float tile, got {c.dtype}", s.acc.loc)


def _check_dequant(tk: TypedKernel, s: N.Dequant) -> None:
    q = tk.tensor(s.src.tensor)
    dst = tk.tiles[s.dst.name]
    if not q.dtype.is_int or q.dtype.bits > 8:
        raise TileError(f"dequant reads packed integers (i1..i8, u1..u8); '{q.name}' is {q.dtype}", s.src.loc)
    if not dst.dtype.is_float:
        raise TileError(f"dequant writes a float tile; '{s.dst.name}' is {dst.dtype}", s.dst.loc)
    _window(tk, s.src, dst)
    _expect_int_scalar(tk, s.group, "the group size")
    for name in filter(None, (s.scale, s.zero)):
        t = tk.tensor(name)
        if len(t.dims) != len(q.dims):
            raise TileError(f"'{name}' must have as many dims as '{q.name}' ({len(q.dims)})", s.loc,
                            hint=f"shape it like {q.name} with the last dim cdiv(K, group)")
    if not tk.tensor(s.scale).dtype.is_float:
        raise TileError(f"scale tensor '{s.scale}' must be float", s.loc)


# ----------------------------------------------------------------------------- expressions

def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(out)


def _unify(tk: TypedKernel, e: N.Expr, ts: list[Type]) -> tuple[tuple[int, ...] | None, DType, bool]:
    """Common shape (None for all-scalar), dtype and weakness of several operands."""
    shape: tuple[int, ...] | None = None
    for t in ts:
        if isinstance(t, TileType):
            nxt = t.shape if shape is None else _broadcast(shape, t.shape)
            if nxt is None:
                raise TileError(f"shapes {list(shape)} and {list(t.shape)} do not broadcast", e.loc)  # type: ignore[arg-type]
            shape = nxt
    strong = [t for t in ts if isinstance(t, TileType)] or [t for t in ts if not t.weak]
    if strong:
        dtypes = {t.dtype for t in strong}
        if len(dtypes) > 1 and all(isinstance(t, TileType) for t in strong):
            names = " and ".join(sorted(d.name for d in dtypes))
            raise TileError(f"operands have different dtypes: {names}", e.loc,
                            hint="cast one explicitly, e.g. f32(x)")
        dt = strong[0].dtype
        if shape is None and len(dtypes) > 1:  # scalar arithmetic promotes to float
            dt = f32 if any(d.is_float for d in dtypes) else i32
        if shape is not None:
            for t in ts:
                if isinstance(t, ScalarType) and t.dtype.is_float and not dt.is_float:
                    raise TileError(f"a float scalar with a {dt} tile", e.loc, hint="cast the tile: f32(x)")
        return shape, dt, False
    dt = f32 if any(t.dtype.is_float for t in ts) else ts[0].dtype
    return None, dt, True


def _make(shape, dtype: DType, weak: bool) -> Type:
    return ScalarType(dtype, weak) if shape is None else TileType(shape, dtype)


def _infer_expr(tk: TypedKernel, e: N.Expr) -> Type:
    if isinstance(e, N.Const):
        if e.dtype is not None:
            return ScalarType(e.dtype)
        v = e.value
        return ScalarType(bool_ if isinstance(v, bool) else i32 if isinstance(v, int) else f32, True)
    if isinstance(e, N.Var):
        if e.name in tk.scalars:
            return tk.scalars[e.name]
        raise TileError(f"'{e.name}' has no value here", e.loc)
    if isinstance(e, N.BlockId):
        return ScalarType(i32)
    if isinstance(e, N.TileRef):
        t = tk.tiles.get(e.name)
        if t is None:
            raise TileError(f"tile '{e.name}' is used before it is defined", e.loc)
        if t.scope == "shared":
            raise TileError(f"'{e.name}' is a shared tile; copy it into a register tile before computing with it",
                            e.loc, hint=f"r = register(...); copy({e.name}, r)")
        return t
    if isinstance(e, N.BinOp):
        lt, rt = tk.type_of(e.lhs), tk.type_of(e.rhs)
        shape, dt, weak = _unify(tk, e, [lt, rt])
        if e.op in N.COMPARISONS:
            return _make(shape, bool_, False)
        if e.op in _LOGICAL and not (dt.is_int or dt == bool_):
            raise TileError(f"'{e.op}' needs bool or integer operands, got {dt}", e.loc)
        if e.op in ("shl", "shr") and not dt.is_int:
            raise TileError(f"shifts need integer operands, got {dt}", e.loc)
        if e.op == "div" and shape is not None and not dt.is_float:
            raise TileError("'/' on integer tiles", e.loc, hint="use '//' for integer division, or cast: f32(x) / y")
        if e.op == "pow" and not dt.is_float:
            raise TileError("'**' needs float operands", e.loc)
        return _make(shape, dt, weak)
    if isinstance(e, N.Unary):
        t = tk.type_of(e.x)
        if e.op in _FLOAT_UNARY and not t.dtype.is_float:
            raise TileError(f"{e.op}(...) needs a float operand, got {t.dtype}", e.loc,
                            hint="cast first, e.g. f32(x)")
        if e.op == "not" and t.dtype.is_float:
            raise TileError("'~' needs a bool or integer operand", e.loc)
        return t if isinstance(t, TileType) else ScalarType(t.dtype, t.weak)
    if isinstance(e, N.Cast):
        t = tk.type_of(e.x)
        if e.dtype.is_packed:
            raise TileError(f"cannot cast to packed dtype {e.dtype}", e.loc)
        return TileType(t.shape, e.dtype) if isinstance(t, TileType) else ScalarType(e.dtype)
    if isinstance(e, N.Where):
        ct = tk.type_of(e.cond)
        if ct.dtype != bool_:
            raise TileError(f"where(...) needs a bool condition, got {ct.dtype}", e.cond.loc,
                            hint="compare, e.g. where(x > 0, x, 0)")
        shape, dt, weak = _unify(tk, e, [tk.type_of(e.a), tk.type_of(e.b)])
        cshape = getattr(ct, "shape", None)
        if cshape is not None:
            shape = _broadcast(shape or (), cshape)
            if shape is None:
                raise TileError("the condition's shape does not broadcast with the values", e.loc)
        return _make(shape, dt, weak)
    if isinstance(e, N.Reduce):
        t = _tile(tk, e.x, f"{e.op}(...)")
        if not 0 <= e.axis < len(t.shape):
            raise TileError(f"axis {e.axis} is out of range for a {len(t.shape)}-d tile", e.loc)
        if t.dtype == bool_:
            raise TileError(f"cannot {e.op} a bool tile; cast it first", e.loc)
        shape = t.shape[:e.axis] + (1,) + t.shape[e.axis + 1:]
        return TileType(shape, i32 if e.op == "argmax" else t.dtype)
    if isinstance(e, N.Broadcast):
        t = _tile(tk, e.x, "broadcast(...)")
        target = _shape(e.shape, "a broadcast extent")
        if len(target) != len(t.shape) or _broadcast(t.shape, target) != target:
            raise TileError(f"cannot broadcast shape {list(t.shape)} to {list(target)}", e.loc,
                            hint="only extent-1 axes stretch, and ranks must match")
        return TileType(target, t.dtype)
    if isinstance(e, N.Iota):
        shape = _shape(e.shape, "an iota extent")
        if not 0 <= e.axis < len(shape):
            raise TileError(f"axis {e.axis} is out of range for a {len(shape)}-d tile", e.loc)
        return TileType(shape, i32)
    if isinstance(e, N.Full):
        if not isinstance(tk.type_of(e.value), ScalarType):
            raise TileError("the fill value must be a scalar", e.value.loc)
        return TileType(_shape(e.shape, "a tile extent"), e.dtype)
    if isinstance(e, N.Transpose):
        t = _tile(tk, e.x, "trans(...)")
        if len(t.shape) != 2:
            raise TileError("trans(...) takes a 2-d tile", e.loc)
        return TileType(t.shape[::-1], t.dtype)
    raise TileError(f"cannot type {type(e).__name__}", getattr(e, "loc", None))


def _tile(tk: TypedKernel, e: N.Expr, what: str) -> TileType:
    t = tk.type_of(e)
    if not isinstance(t, TileType):
        raise TileError(f"{what} takes a tile, got a scalar", e.loc)
    return t


def tile_names_in_order(kernel: N.Kernel) -> list[str]:
    """Tiles in order of definition (for printing and golden files)."""
    out = []
    for s in walk_stmts(kernel.body):
        if isinstance(s, N.Alloc) or (isinstance(s, N.Assign) and s.define):
            out.append(s.name)
    return out
