"""The tile IR: immutable nodes that both front ends build and every pass reads.

Nodes are frozen dataclasses.  Each keeps its `loc` for error messages, excluded
from equality so that a kernel built from a `.tile` file and the same kernel
written with `@tile_kernel` compare equal.

Vocabulary
----------
* Scalars (`Var`, `Const`, `BinOp` on scalars, `BlockId`) are values every thread
  of a block agrees on: dims, compile-time constants, loop indices, `let`s.
* Tiles are n-d arrays with a compile-time shape, living in `register` or
  `shared` scope.  Tile expressions (`TileRef`, elementwise `BinOp`/`Unary`,
  `Cast`, `Where`, `Reduce`, `Broadcast`, `Iota`, `Full`) always produce a new
  register tile.
* Global tensors are kernel parameters; they are only touched by `Copy` and
  `Dequant`, through a `GlobalRef` whose indices are *tile indices*: the tile's
  shape, padded with leading 1s to the tensor's rank, times the index gives the
  element offset of the window (an `ElemOffset` index gives it in elements, in a
  copy).  Elements of a window that fall outside the tensor read as `pad`
  (default 0) and are never written.  `ReadScalar` reads one element into a scalar.
* `If` runs one of two blocks on a scalar condition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..diagnostics import UNKNOWN, SourceLoc, TileError, did_you_mean
from .dtypes import DType


def _loc() -> SourceLoc:
    return field(default=UNKNOWN, compare=False, repr=False)


# A dtype, or the name of a `dtype` parameter that specialization replaces.
DTypeLike = Union[DType, str]


# ----------------------------------------------------------------------------- expressions

@dataclass(frozen=True)
class Const:
    value: Union[int, float, bool]
    dtype: DType | None = None  # None: weakly typed literal, takes its partner's dtype
    loc: SourceLoc = _loc()
    # Python has 2 == 2.0 == True, but as literals they type differently (and type_of caches by equality)
    kind: str = field(default="", init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "kind", type(self.value).__name__)


@dataclass(frozen=True)
class Var:
    """A scalar by name: a dim symbol, a scalar or const parameter, a loop index or a let."""
    name: str
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class TileRef:
    """A register or shared tile by name."""
    name: str
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class BlockId:
    """Index of this block along one grid axis."""
    axis: int
    loc: SourceLoc = _loc()


BINARY_OPS = ("add", "sub", "mul", "div", "floordiv", "mod", "max", "min", "pow",
              "lt", "le", "gt", "ge", "eq", "ne", "and", "or", "xor", "shl", "shr", "cdiv")
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
UNARY_OPS = ("neg", "not", "abs", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "tanh",
             "sigmoid", "silu", "gelu", "gelu_tanh", "sin", "cos", "erf", "recip")
REDUCE_OPS = ("sum", "max", "min")


@dataclass(frozen=True)
class BinOp:
    op: str
    lhs: "Expr"
    rhs: "Expr"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Unary:
    op: str
    x: "Expr"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Cast:
    x: "Expr"
    dtype: "DTypeLike"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Where:
    cond: "Expr"
    a: "Expr"
    b: "Expr"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Reduce:
    """Reduce a tile along `axis`, keeping the axis with extent 1.

    Float inputs narrower than f32 are accumulated in f32 and rounded once. `argmax` (i32 indices)
    is rewritten into sum/max/min forms by passes/expand.py before any backend sees it."""
    op: str
    x: "Expr"
    axis: int
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Broadcast:
    """Stretch the extent-1 axes of a tile to `shape`."""
    x: "Expr"
    shape: tuple["Expr", ...]
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Iota:
    """An i32 tile whose elements are their own index along `axis`."""
    shape: tuple["Expr", ...]
    axis: int
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Full:
    """A register tile of `shape` filled with a scalar."""
    shape: tuple["Expr", ...]
    value: "Expr"
    dtype: "DTypeLike"
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Transpose:
    """Swap the two axes of a 2-d tile."""
    x: "Expr"
    loc: SourceLoc = _loc()


Expr = Union[Const, Var, TileRef, BlockId, BinOp, Unary, Cast, Where, Reduce, Broadcast,
             Iota, Full, Transpose]


# ----------------------------------------------------------------------------- layouts

@dataclass(frozen=True)
class LayoutExpr:
    """An author's layout annotation, kept as written; the layout pass interprets it.

    `name(args...)`, or `lhs * rhs` when `name == "*"` (composition of task-mapping
    atoms, e.g. `spatial(4, 8) * local(2, 2)`)."""
    name: str
    args: tuple[Union[int, "LayoutExpr"], ...] = ()
    loc: SourceLoc = _loc()

    def __str__(self) -> str:
        if self.name == "*":
            return " * ".join(str(a) for a in self.args)
        return self.name + (f"({', '.join(str(a) for a in self.args)})" if self.args else "")


# ----------------------------------------------------------------------------- what statements touch

def _names(*parts) -> frozenset:
    """Names of the tiles (`TileRef`) and tensors (`GlobalRef`, or a tensor named by a string)
    inside expressions, windows and plain names."""
    out = set()
    stack = list(parts)
    while stack:
        x = stack.pop()
        if x is None or isinstance(x, (int, float, bool, Var, Const, BlockId)):
            continue
        if isinstance(x, str):
            out.add(x)
        elif isinstance(x, TileRef):
            out.add(x.name)
        elif isinstance(x, GlobalRef):
            out.add(x.tensor)
            stack.extend(x.indices)
        elif isinstance(x, tuple):
            stack.extend(x)
        elif hasattr(x, "__dataclass_fields__"):
            stack.extend(getattr(x, f) for f in x.__dataclass_fields__ if f not in ("loc", "op", "dtype", "kind", "name"))
    return frozenset(out)


# ----------------------------------------------------------------------------- statements

SCOPES = ("register", "shared")


@dataclass(frozen=True)
class ElemOffset:
    """A window index given in elements (`A[pos:, j]`, `A[pos:stop, j]`): on this axis the window
    covers elements `start .. start + extent - 1`, and elements at or past `stop` (when given)
    count as outside the tensor (read as pad, never written).  Only inside `GlobalRef.indices`."""
    start: Expr
    stop: Expr | None = None
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class GlobalRef:
    """A tile-indexed window of a global tensor parameter (see module docstring)."""
    tensor: str
    indices: tuple[Expr, ...]
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class Let:
    """Bind a scalar name once."""
    name: str
    value: Expr
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return _names(self.value)

    def writes(self) -> frozenset:
        return frozenset()


@dataclass(frozen=True)
class Alloc:
    """Declare a tile in `scope` with a compile-time `shape`, filled with `init` (default 0)."""
    name: str
    scope: str
    dtype: "DTypeLike"
    shape: tuple[Expr, ...]
    init: Expr | None = None
    layout: LayoutExpr | None = None
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return frozenset()

    def writes(self) -> frozenset:
        return frozenset({self.name})


@dataclass(frozen=True)
class Assign:
    """`name = value` for a tile expression.

    `define` is true where the name is new: it then declares a register tile whose
    shape and dtype are the value's.  Otherwise the value must have the tile's
    dtype and a shape that broadcasts to the tile's."""
    name: str
    value: Expr
    define: bool
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return _names(self.value)

    def writes(self) -> frozenset:
        return frozenset({self.name})


@dataclass(frozen=True)
class Copy:
    """Move a tile between scopes, converting to the destination's dtype.

    One side may be a `GlobalRef`; the window's shape is the tile side's."""
    src: Union[TileRef, GlobalRef]
    dst: Union[TileRef, GlobalRef]
    pad: Expr | None = None
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return _names(self.src.name if isinstance(self.src, TileRef) else self.src.tensor)

    def writes(self) -> frozenset:
        return _names(self.dst.name if isinstance(self.dst, TileRef) else self.dst.tensor)


@dataclass(frozen=True)
class Gemm:
    """`acc += op(a) @ op(b)` with products accumulated in f32 (or acc's dtype)."""
    a: TileRef
    b: TileRef
    acc: TileRef
    trans_a: bool = False
    trans_b: bool = False
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return frozenset({self.a.name, self.b.name, self.acc.name})

    def writes(self) -> frozenset:
        return frozenset({self.acc.name})


@dataclass(frozen=True)
class Dequant:
    """Load a window of a bit-packed integer tensor and dequantize it into a tile.

    `dst[i, j] = ((q[i, j] - zero[i, g]) * scale[i, g])` computed in f32 and rounded
    to dst's dtype, where `g = (column of the element in the tensor) // group`.
    `scale` and `zero` are global tensors shaped like the packed tensor with the
    last dim `cdiv(K, group)`; without `zero` the integers are used as they are."""
    src: GlobalRef
    dst: TileRef
    scale: str
    group: Expr
    zero: str | None = None
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return frozenset({self.src.tensor, self.scale} | ({self.zero} if self.zero else set()))

    def writes(self) -> frozenset:
        return frozenset({self.dst.name})


@dataclass(frozen=True)
class AtomicAdd:
    """`dst[window] += src` for every element inside the tensor, each add atomic: blocks adding into
    the same elements in any order give their unordered sum (a float sum's rounding depends on the
    order). The tile is converted to the tensor's float dtype (f32, f16 or bf16) first; elements
    outside the tensor are dropped, as a copy's are."""
    src: TileRef
    dst: GlobalRef
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return frozenset({self.src.name, self.dst.tensor})

    def writes(self) -> frozenset:
        return frozenset({self.dst.tensor})


@dataclass(frozen=True)
class For:
    """`for var in range(start, stop)`; `stages` > 1 asks backends to software-pipeline."""
    var: str
    start: Expr
    stop: Expr
    body: tuple["Stmt", ...]
    stages: Expr | None = None
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return frozenset().union(*(s.reads() for s in self.body))

    def writes(self) -> frozenset:
        return frozenset().union(*(s.writes() for s in self.body))


@dataclass(frozen=True)
class ReadScalar:
    """`name = T[i, j, ...]`: bind a scalar to one element of a global tensor (one index per dim, in
    elements), a value every thread of the block agrees on.  An index outside the tensor reads 0."""
    name: str
    src: GlobalRef
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return frozenset({self.src.tensor})

    def writes(self) -> frozenset:
        return frozenset()


@dataclass(frozen=True)
class If:
    """`if cond { body } else { orelse }` on a scalar condition (the same for every thread of a block):
    runs one branch.  Names defined in a branch are local to it."""
    cond: Expr
    body: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] = ()
    loc: SourceLoc = _loc()

    def reads(self) -> frozenset:
        return _names(self.cond).union(*(s.reads() for s in self.body + self.orelse))

    def writes(self) -> frozenset:
        return frozenset().union(*(s.writes() for s in self.body + self.orelse))


Stmt = Union[Let, Alloc, Assign, Copy, Gemm, Dequant, AtomicAdd, For, ReadScalar, If]


# ----------------------------------------------------------------------------- kernels

@dataclass(frozen=True)
class TensorParam:
    """A global tensor: dims are symbol names (bound at call time) or ints.

    `storage` "packed" (`W: u4[N, K] @ packed`): the tensor's elements are stored in the order the
    layout plan chooses for the tile it is dequantized into (tile by tile, each thread's fragment
    values contiguous: `tilelang.layout.packing`), made by `kernel.pack(...)`; "plain": row-major."""
    name: str
    dtype: "DTypeLike"
    dims: tuple[Union[str, int], ...]
    loc: SourceLoc = _loc()
    storage: str = "plain"


@dataclass(frozen=True)
class ScalarParam:
    name: str
    dtype: DType
    loc: SourceLoc = _loc()


@dataclass(frozen=True)
class ConstParam:
    """A compile-time integer (`BM: const = 64`) or element type (`T: dtype = f16`).

    Kernels are specialized per value; a dtype parameter used by a tensor is
    bound from the argument's dtype at call time.  `candidates` (`BN: const[16, 32, 64] = 32`)
    are the values the autotuner may try when the caller does not pin the constant;
    the default is one of them."""
    name: str
    default: Union[int, str, None] = None
    kind: str = "int"  # "int" or "dtype"
    candidates: tuple[int, ...] = ()
    loc: SourceLoc = _loc()


Param = Union[TensorParam, ScalarParam, ConstParam]


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    grid: tuple[Expr, ...]
    threads: Expr
    body: tuple[Stmt, ...]
    loc: SourceLoc = _loc()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def tensors(self) -> tuple[TensorParam, ...]:
        return tuple(p for p in self.params if isinstance(p, TensorParam))

    @property
    def scalars(self) -> tuple[ScalarParam, ...]:
        return tuple(p for p in self.params if isinstance(p, ScalarParam))

    @property
    def consts(self) -> tuple[ConstParam, ...]:
        return tuple(p for p in self.params if isinstance(p, ConstParam))

    @property
    def dim_symbols(self) -> tuple[str, ...]:
        """Symbolic dims in order of first appearance."""
        seen: dict[str, None] = {}
        consts = {c.name for c in self.consts}
        for t in self.tensors:
            for d in t.dims:
                if isinstance(d, str) and d not in consts:
                    seen.setdefault(d)
        return tuple(seen)


@dataclass(frozen=True)
class Module:
    """The kernels of one source file."""
    kernels: tuple[Kernel, ...]
    file: str = "<string>"

    def kernel(self, name: str) -> Kernel:
        for k in self.kernels:
            if k.name == name:
                return k
        names = [k.name for k in self.kernels]
        raise TileError(f"{self.file} has no kernel '{name}'",
                        hint=did_you_mean(name, names, f"its kernels: {', '.join(names) or 'none'}"))
